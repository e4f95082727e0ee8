"""Reads what scoring needs from the database: runs, job loads, test histories.

Selectors only: they turn rows into the plain inputs of ``analysis.scoring`` and
never write. Scores cover the runs already analyzed (``WorkflowRun.analyzed_at``),
so every reader here reads the results of analyzed runs only (and of the one
run being applied): a run still waiting for its analyze job reaches the scores
exactly once, through that job. The readers name the runs they include, never
the ones they leave out: a run is only ever marked analyzed under the
repository's analysis lock, which the caller holds, so the included set cannot
change between two reads, while runs stored meanwhile (unanalyzed) would slip
past a list of exclusions taken a moment earlier. A very large run is applied
in batches of tests, each in its own transaction; until its last batch, its
results count for the tests it has reached (``WorkflowRun.analyzed_upto_test``)
and no others. Histories are fetched in primary-key order (test, run, position), the index the results
table has for exactly this.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Q

from analysis.scoring import HistoryContext, JobLoad, ResultGroup, ResultRow, RunMeta
from ingest import bulk
from ingest.models import Repository, TestResult, WorkflowRun, outcome_in_sql

_HISTORY_COLUMNS = "run_id, position, outcome, job, flaky_reruns, rerun_failures, fingerprint"


def load_context(
    repository: Repository, *, including: int | Iterable[int] | None = None
) -> HistoryContext:
    """The repository's analyzed runs (and the run or runs ``including``) with their job loads.

    A job load carries the most common failure fingerprints of the job, as the
    import counted them (``WorkflowRun.job_fingerprints``): what tells an
    infrastructure incident (``analysis.scoring.incidents``) without reading
    the results. Runs stored before job loads were counted are counted here,
    with one aggregate query for their loads and one for their fingerprints
    (migration ``ingest.0007`` counted the fingerprints of the runs stored
    before it). A run with job loads but no fingerprints (written by other
    means than the import, like the benchmark's) has none: only the
    co-failure rule applies to it.
    """
    runs: dict[int, RunMeta] = {}
    counted: dict[tuple[int, str], tuple[int, int]] = {}
    fingerprints: dict[tuple[int, str], tuple[tuple[str, int], ...]] = {}
    uncounted: list[int] = []
    unfingerprinted: list[int] = []
    applied_upto: dict[int, int] = {}
    extra = [] if including is None else [including] if isinstance(including, int) else [*including]
    queryset = WorkflowRun.objects.filter(repository=repository).filter(
        Q(analyzed_at__isnull=False) | Q(analyzed_upto_test__isnull=False) | Q(pk__in=extra)
    )
    for (
        pk, run_id, attempt, sha, branch, event, started_at, job_loads, job_fingerprints,
        analyzed_at, upto,
    ) in queryset.values_list(
        "pk", "run_id", "run_attempt", "sha", "branch", "event", "started_at", "job_loads",
        "job_fingerprints", "analyzed_at", "analyzed_upto_test",
    ).iterator(chunk_size=5000):  # fmt: skip
        if analyzed_at is None and upto is not None and pk not in extra:
            applied_upto[pk] = upto
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
        else:
            for job, (results, failures) in job_loads.items():
                counted[(pk, job)] = (results, failures)
        if job_fingerprints is None:
            if job_loads is None:
                unfingerprinted.append(pk)
        else:
            for job, top in job_fingerprints.items():
                fingerprints[(pk, job)] = _fingerprints(top)
    if uncounted:  # runs stored before job loads were counted at ingest
        for pk, job_loads in bulk.count_job_loads(uncounted).items():
            for job, (results, failures) in job_loads.items():
                counted[(pk, job)] = (results, failures)
    if unfingerprinted:  # runs stored before fingerprints were counted at ingest
        for pk, job_fingerprints in bulk.count_job_fingerprints(unfingerprinted).items():
            for job, top in job_fingerprints.items():
                fingerprints[(pk, job)] = _fingerprints(top)
    loads = {
        key: JobLoad(results, failures, fingerprints.get(key, ()))
        for key, (results, failures) in counted.items()
    }
    return HistoryContext(
        runs=runs,
        loads=loads,
        usual_failures=HistoryContext.usual_failures_from(loads.items()),
        default_branch=repository.default_branch,
        applied_upto=applied_upto,
    )


def _fingerprints(top: list[list[Any]]) -> tuple[tuple[str, int], ...]:
    """``WorkflowRun.job_fingerprints`` entries as ``JobLoad.fingerprints``."""
    return tuple((str(fingerprint), int(count)) for fingerprint, count in top)


def iter_histories(
    test_pks: Iterable[int], *, context: HistoryContext, batch: int = 500
) -> Iterator[tuple[int, list[ResultRow]]]:
    """(test pk, its results in the context's runs) for each test that has some, in pk order.

    The context (``load_context``) holds the analyzed runs, read under the
    analysis lock, the run being applied, and the runs applied in batches so
    far, which count for the tests up to their boundary only.
    """
    table = TestResult._meta.db_table
    runs, upto = context.runs, context.applied_upto
    ordered = sorted(set(test_pks))
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
                if row[1] not in runs:
                    continue  # stored since, or still waiting for its analyze job
                if upto and row[1] in upto and row[0] > upto[row[1]]:
                    continue  # a run applied in batches that has not reached this test yet
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


def summarize_tests(context: HistoryContext, first_pk: int, last_pk: int) -> dict[int, TestSummary]:
    """Summaries of the tests with pk in [first_pk, last_pk], over the context's runs, in one pass.

    The context's runs are the boundary the caller read under the analysis
    lock, as for ``iter_histories``: a run stored since is left out, and a run
    applied in batches counts up to its boundary.
    Results are counted per test, outcome and job, and failures per run as well
    (whether a failure is an outage casualty depends on its run), so a test
    comes back as a handful of groups however long its history.
    """
    table = TestResult._meta.db_table
    upto = context.applied_upto
    whole = sorted(pk for pk in context.runs if pk not in upto)
    if connection.vendor == "postgresql":
        where = "test_id >= %s AND test_id <= %s AND (run_id = ANY(%s)"
        params: list[object] = [first_pk, last_pk, whole]
    else:  # SQLite: the run list as one JSON parameter, however many runs
        where = "test_id >= %s AND test_id <= %s AND (run_id IN (SELECT value FROM json_each(%s))"
        params = [first_pk, last_pk, json.dumps(whole)]
    for run_pk, last_test in sorted(upto.items()):
        where += " OR (run_id = %s AND test_id <= %s)"
        params += [run_pk, last_test]
    where += ")"
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
