"""Reads what scoring needs from the database: runs, job loads, test histories.

Selectors only: they turn rows into the plain inputs of ``analysis.scoring`` and
never write. Scores cover the runs already analyzed (``WorkflowRun.analyzed_at``),
so every reader here leaves out runs still waiting for their analyze job:
their results reach the scores exactly once, through that job. Histories are
fetched in primary-key order (test, run, position), the index the results
table has for exactly this.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import connection

from analysis.scoring import HistoryContext, JobLoad, ResultGroup, ResultRow, RunMeta
from ingest import bulk
from ingest.models import Repository, TestResult, WorkflowRun, outcome_in_sql

_HISTORY_COLUMNS = "run_id, position, outcome, job, flaky_reruns, rerun_failures, fingerprint"


def load_context(repository: Repository, *, including: int | None = None) -> HistoryContext:
    """The repository's analyzed runs (and run ``including``) with their job loads."""
    runs: dict[int, RunMeta] = {}
    loads: dict[tuple[int, str], JobLoad] = {}
    uncounted: list[int] = []
    queryset = WorkflowRun.objects.filter(repository=repository, analyzed_at__isnull=False)
    if including is not None:
        queryset = queryset | WorkflowRun.objects.filter(pk=including)
    for pk, run_id, attempt, sha, branch, event, started_at, job_loads in queryset.values_list(
        "pk", "run_id", "run_attempt", "sha", "branch", "event", "started_at", "job_loads"
    ).iterator(chunk_size=5000):
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
            uncounted.append(pk)
            continue
        for job, (results, failures) in job_loads.items():
            loads[(pk, job)] = JobLoad(results, failures)
    if uncounted:  # runs stored before job loads were counted at ingest
        for pk, job_loads in bulk.count_job_loads(uncounted).items():
            for job, (results, failures) in job_loads.items():
                loads[(pk, job)] = JobLoad(results, failures)
    return HistoryContext(
        runs=runs,
        loads=loads,
        usual_failures=HistoryContext.usual_failures_from(loads.items()),
        default_branch=repository.default_branch,
    )


def unanalyzed_run_pks(repository: Repository, *, besides: int | None = None) -> list[int]:
    """Runs stored but not yet in the scores (their analyze job is still to come)."""
    queryset = WorkflowRun.objects.filter(repository=repository, analyzed_at__isnull=True)
    if besides is not None:
        queryset = queryset.exclude(pk=besides)
    return list(queryset.values_list("pk", flat=True))


def iter_histories(
    test_pks: Iterable[int], *, leaving_out: Iterable[int] = (), batch: int = 500
) -> Iterator[tuple[int, list[ResultRow]]]:
    """(test pk, its results) for each test that has results, in test pk order."""
    table = TestResult._meta.db_table
    ordered = sorted(set(test_pks))
    excluded = set(leaving_out)
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), batch):
            chunk = ordered[start : start + batch]
            cursor.execute(
                f"SELECT test_id, {_HISTORY_COLUMNS} FROM {table} "
                f"WHERE test_id IN ({', '.join(['%s'] * len(chunk))}) "
                f"ORDER BY test_id, run_id, position",
                chunk,
            )
            current, rows = None, []
            make = ResultRow._make
            for row in cursor.fetchall():
                if row[1] in excluded:
                    continue
                if row[0] != current:
                    if rows:
                        yield current, rows
                    current, rows = row[0], []
                rows.append(make(row[1:]))
            if rows:
                yield current, rows


@dataclass(slots=True)
class TestSummary:
    """One test's results in brief: what ``analysis.scoring.quiet_tally`` reads to tell
    whether the test needs a full look at its history."""

    __test__ = False  # not a pytest test class

    groups: list[ResultGroup]
    latest_run: int


def summarize_tests(
    first_pk: int, last_pk: int, *, leaving_out: Iterable[int] = ()
) -> dict[int, TestSummary]:
    """Summaries of the tests with pk in [first_pk, last_pk], in one pass over their results.

    Results are counted per test, outcome and job, and failures per run as well
    (whether a failure is an outage casualty depends on its run), so a test
    comes back as a handful of groups however long its history.
    """
    table = TestResult._meta.db_table
    excluded = sorted(set(leaving_out))
    where = "test_id >= %s AND test_id <= %s"
    params: list[object] = [first_pk, last_pk]
    if excluded:
        where += f" AND run_id NOT IN ({', '.join(['%s'] * len(excluded))})"
        params.extend(excluded)
    failure_run = f"CASE WHEN {outcome_in_sql()} THEN run_id END"
    summaries: dict[int, TestSummary] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT test_id, outcome, job, {failure_run}, COUNT(*), MAX(flaky_reruns), "
            f"MAX(run_id) FROM {table} WHERE {where} GROUP BY test_id, outcome, job, {failure_run}",
            params,
        )
        for test_pk, outcome, job, run_pk, results, reruns, latest in cursor.fetchall():
            summary = summaries.get(test_pk)
            if summary is None:
                summary = summaries[test_pk] = TestSummary(groups=[], latest_run=latest)
            summary.groups.append(ResultGroup(outcome, job, run_pk, results, reruns or 0))
            summary.latest_run = max(summary.latest_run, latest)
    return summaries
