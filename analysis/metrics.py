"""What the analysis did, counted in the worker that did it (see ``jobs.metrics``)."""

from __future__ import annotations

from prometheus_client import Counter

# ``run``: a run's tests brought up to date by runs-analyze; ``recompute``: a
# repository rescored from its whole history.
TESTS_ANALYZED = Counter(
    "flakeguard_tests_analyzed",
    "Test scores brought up to date, by how",
    ["mode"],
)
