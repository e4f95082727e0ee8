"""Reads what scoring needs from the database: runs, job loads, test histories.

Selectors only: they turn rows into the plain inputs of ``analysis.scoring`` and
never write. Histories are fetched in primary-key order (test, run, position),
the one index the results table has for this, and grouped per test as they
stream, so memory holds one batch of tests at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.db import connection

from analysis.scoring import HistoryContext, JobLoad, ResultRow, RunMeta
from ingest import bulk
from ingest.models import Repository, TestResult, WorkflowRun


def load_context(repository: Repository) -> HistoryContext:
    """The repository's runs and per-job loads, with each job's usual failure count."""
    runs: dict[int, RunMeta] = {}
    loads: dict[tuple[int, str], JobLoad] = {}
    missing: list[int] = []
    for pk, run_id, attempt, sha, branch, event, started_at, job_loads in (
        WorkflowRun.objects.filter(repository=repository)
        .values_list(
            "pk", "run_id", "run_attempt", "sha", "branch", "event", "started_at", "job_loads"
        )
        .iterator(chunk_size=5000)
    ):
        runs[pk] = RunMeta(
            pk=pk,
            run_id=run_id,
            attempt=attempt,
            sha=sha,
            branch=branch,
            event=event,
            started_at=started_at.timestamp(),
            started_iso=started_at.isoformat(),
        )
        if job_loads is None:
            missing.append(pk)
            continue
        for job, (results, failures) in job_loads.items():
            loads[(pk, job)] = JobLoad(results, failures)
    if missing:  # runs stored before job loads were counted at ingest
        for pk, job_loads in bulk.count_job_loads(missing).items():
            for job, (results, failures) in job_loads.items():
                loads[(pk, job)] = JobLoad(results, failures)
    return HistoryContext(
        runs=runs,
        loads=loads,
        usual_failures=HistoryContext.usual_failures_from(loads.items()),
        default_branch=repository.default_branch,
    )


def iter_histories(
    test_pks: Iterable[int], *, batch: int = 500
) -> Iterator[tuple[int, list[ResultRow]]]:
    """(test pk, its results) for each test that has results, in test pk order."""
    table = TestResult._meta.db_table
    ordered = sorted(set(test_pks))
    columns = "test_id, run_id, position, outcome, job, flaky_reruns, rerun_failures, fingerprint"
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), batch):
            chunk = ordered[start : start + batch]
            placeholders = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"SELECT {columns} FROM {table} WHERE test_id IN ({placeholders}) "
                f"ORDER BY test_id, run_id, position",
                chunk,
            )
            current, rows = None, []
            make = ResultRow._make
            for row in cursor.fetchall():
                if row[0] != current:
                    if rows:
                        yield current, rows
                    current, rows = row[0], []
                rows.append(make(row[1:]))
            if rows:
                yield current, rows
