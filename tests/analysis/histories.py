"""Hand-built CI histories of one test, for the pure scoring tests.

``History`` lays runs out in time order (35 minutes apart), each with the test's
outcome per job, and fills the job loads a real import would have counted: a
suite of ``suite`` tests, of which ``other_failures`` others failed in that job,
and the most common failure fingerprints (``fingerprints``, else the test's own).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from analysis.scoring import (
    HistoryContext,
    JobLoad,
    ResultRow,
    RunMeta,
    ScoringSettings,
    Verdict,
    score_test,
)

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class History:
    def __init__(self, *, suite: int = 200) -> None:
        self.suite = suite
        self.runs: dict[int, RunMeta] = {}
        self.loads: dict[tuple[int, str], JobLoad] = {}
        self.rows: list[ResultRow] = []
        self.sha_counter = 0
        self.run_id = 9_000_000

    def sha(self) -> str:
        self.sha_counter += 1
        return f"{self.sha_counter:07x}" + "0" * 33

    def run(
        self,
        outcomes: dict[str, str | list[str]] | str,
        *,
        sha: str | None = None,
        branch: str = "main",
        event: str = "push",
        attempt: int = 1,
        run_id: int | None = None,
        other_failures: int = 0,
        flaky_reruns: int = 0,
        fingerprint: str = "ab12" * 4,
        fingerprints: tuple[tuple[str, int], ...] | None = None,
    ) -> RunMeta:
        """Add a run attempt; ``outcomes`` per job ("p", "f", "e", "s", or a list for in-run repeats).

        The test fails with ``fingerprint``; ``fingerprints`` is what the job load
        counted (default: the test's own failures only).
        """
        if isinstance(outcomes, str):
            outcomes = {"linux": outcomes}
        pk = len(self.runs) + 1
        if run_id is None:
            self.run_id += 7
            run_id = self.run_id
        when = START + timedelta(minutes=35 * pk)
        meta = RunMeta(
            pk=pk,
            run_id=run_id,
            attempt=attempt,
            sha=sha or self.sha(),
            branch=branch,
            event=event,
            started_at=when.timestamp(),
            started_iso=when.isoformat(),
        )
        self.runs[pk] = meta
        position = 0
        names = {"p": "passed", "f": "failed", "e": "error", "s": "skipped"}
        for job, marks in outcomes.items():
            failed_here = 0
            for mark in marks if isinstance(marks, list) else [marks]:
                position += 1
                outcome = names[mark]
                failed_here += outcome in ("failed", "error")
                self.rows.append(
                    ResultRow(
                        pk,
                        position,
                        outcome,
                        job,
                        flaky_reruns if outcome == "passed" else 0,
                        0,
                        fingerprint if outcome in ("failed", "error") else "",
                    )
                )
            counted = fingerprints
            if counted is None:
                counted = ((fingerprint, failed_here),) if failed_here else ()
            self.loads[(pk, job)] = JobLoad(self.suite, failed_here + other_failures, counted)
        return meta

    def runs_of(self, pattern: str, **kwargs: object) -> None:
        """One run per character of ``pattern`` on the default job, e.g. "ppfpp"."""
        for mark in pattern:
            self.run(mark, **kwargs)  # type: ignore[arg-type]

    def context(self, *, default_branch: str = "main") -> HistoryContext:
        return HistoryContext(
            runs=self.runs,
            loads=self.loads,
            usual_failures=HistoryContext.usual_failures_from(self.loads.items()),
            default_branch=default_branch,
        )

    def verdict(self, settings: ScoringSettings | None = None) -> Verdict:
        return score_test(self.rows, self.context(), settings or ScoringSettings())

    def verdict_after(self, runs: int, settings: ScoringSettings | None = None) -> Verdict:
        """The verdict as it stood after the first ``runs`` run attempts."""
        kept = {pk for pk in self.runs if pk <= runs}
        rows = [row for row in self.rows if row.run_pk in kept]
        context = HistoryContext(
            runs={pk: self.runs[pk] for pk in kept},
            loads={key: load for key, load in self.loads.items() if key[0] in kept},
        )
        context.usual_failures = HistoryContext.usual_failures_from(context.loads.items())
        return score_test(rows, context, settings or ScoringSettings())


def random_flake(
    rng: random.Random,
    *,
    runs: int,
    rate: float,
    jobs: tuple[str, ...] = ("linux",),
    flaky_jobs: tuple[str, ...] | None = None,
    rerun_rate: float = 0.0,
    history: History | None = None,
) -> History:
    """A test failing at random at ``rate`` in ``flaky_jobs``, on main, re-run at ``rerun_rate``."""
    history = history or History()
    flaky_jobs = flaky_jobs or jobs
    for _ in range(runs):
        outcomes = {job: "f" if job in flaky_jobs and rng.random() < rate else "p" for job in jobs}
        meta = history.run(outcomes)
        if "f" in outcomes.values() and rng.random() < rerun_rate:
            again = {job: "f" if job in flaky_jobs and rng.random() < rate else "p" for job in jobs}
            history.run(again, sha=meta.sha, run_id=meta.run_id, attempt=2)
    return history
