"""A deterministic, seeded generator of a realistic made-up CI history for FlakeGuard.

``generate_history(out_dir, HistoryConfig(...))`` writes JUnit reports of a web shop's
GitHub Actions runs (pytest or Maven Surefire style, as ZIP artifacts or plain XML, one per
matrix job per attempt), a run manifest in the DESIGN.md format and ``truth.json``, the
ground truth of which tests are stable, flaky, failing, broken on a pull request, fixed, or
skipped, and which runs had an infra outage. ``make demo`` and ``make bench`` import it; the
classifier is evaluated against its truth. Pure Python, no Django; the same configuration
always gives the same bytes. ``python -m ingest.sample_history OUT_DIR`` runs it from a shell.
"""

from ingest.sample_history.generate import GeneratedHistory, HistoryConfig, generate_history

__all__ = ["GeneratedHistory", "HistoryConfig", "generate_history"]
