"""What scoring reads: one test's results, and the runs and job loads around them.

Plain tuples and dataclasses filled by ``analysis.loading`` from the database (or
by tests by hand). A result row is a NamedTuple so that rows fetched in bulk
become inputs without copying field by field.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class ResultRow(NamedTuple):
    """One stored result of the test being scored."""

    run_pk: int
    position: int
    outcome: str  # an ingest.junit.Outcome value: passed | failed | error | skipped
    job: str
    flaky_reruns: int = 0
    rerun_failures: int = 0
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class RunMeta:
    """One workflow run attempt, as scoring needs it."""

    pk: int
    run_id: int
    attempt: int
    sha: str
    branch: str
    event: str
    started_at: float  # POSIX seconds: cheap to sort and compare
    started_iso: str = ""  # for evidence and flaky_since

    @property
    def order(self) -> tuple[float, int, int]:
        return (self.started_at, self.run_id, self.attempt)


@dataclass(frozen=True, slots=True)
class JobLoad:
    """How many results one job (matrix configuration) of a run attempt had, and how many failed.

    ``fingerprints`` holds the most common failure fingerprints of those
    failures with how many results failed with each, most common first (the
    few an import counts, ``ingest.store``): many tests failing with one error
    at once is what a service outage looks like.
    """

    results: int
    failures: int
    fingerprints: tuple[tuple[str, int], ...] = ()


@dataclass
class HistoryContext:
    """Everything outside the test's own rows that its verdict depends on."""

    runs: Mapping[int, RunMeta]
    loads: Mapping[tuple[int, str], JobLoad] = field(default_factory=dict)
    # The usual number of failures in one run of each job: failures beyond it
    # are what makes a run look like an outage.
    usual_failures: Mapping[str, float] = field(default_factory=dict)
    default_branch: str = "main"
    # Runs being applied in batches (a very large run, analysed a part at a
    # time): each counts only for the tests with pk up to the one given.
    applied_upto: Mapping[int, int] = field(default_factory=dict)
    # Filled on first use by analysis.scoring.incidents: the job's attempts of
    # each commit and each branch's previous commit, and the incidents found.
    _neighbours: dict[tuple[int, str], tuple[int, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _incidents: dict[tuple[int, str], Any] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _incidents_settings: Any = field(default=None, init=False, repr=False, compare=False)

    @staticmethod
    def usual_failures_from(loads: Iterable[tuple[tuple[int, str], JobLoad]]) -> dict[str, float]:
        """Median failures per run of each job label."""
        per_job: dict[str, list[int]] = {}
        for (_, job), load in loads:
            per_job.setdefault(job, []).append(load.failures)
        return {job: float(statistics.median(counts)) for job, counts in per_job.items()}
