"""Scoring benchmark: a full recompute and one runs-analyze on a synthetic history.

Writes a realistic history straight into PostgreSQL with SQL (seeded, so every
run of the benchmark scores the same data): one repository whose tests are
mostly stable, a few flaky at their own rates, a few broken for a stretch of
runs, with re-run attempts, pull request branches and two outage runs where
most tests errored at once. Then it times ``recompute_repository`` over the
whole history, several rounds (each rescores everything), and ``analyze_run``
for one new run of a second, smaller repository, each round rolled back so
that every round starts from the same state. Prints medians beside the
targets. Both repositories are deleted at the end, also when a step fails.
Needs PostgreSQL in DATABASE_URL (``make bench`` starts a throwaway one).

    python -m bench.analysis [--tests 20000] [--runs 250] [--rounds 3]
                             [--analyze-tests 5000] [--analyze-runs 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

RECOMPUTE_REPOSITORY = "bench/analysis-recompute"
ANALYZE_REPOSITORY = "bench/analysis-analyze"
RECOMPUTE_TARGET_SECONDS = 10.0
ANALYZE_TARGET_SECONDS = 1.0

# Share of tests of each kind; the rest pass every time.
FLAKY_SHARE = 0.04  # fail at random, each at its own rate between 1% and 20%
BROKEN_SHARE = 0.01  # fail on every run of one stretch of the history
SKIPPED_SHARE = 0.005  # skipped every time (a platform marker, say)
RETRY_SHARE = 0.10  # runs that are a second attempt of the run before them
MAIN_SHARE = 0.60  # runs on the default branch; the rest are pull requests
OUTAGE_SHARE = 0.60  # tests that error in an outage run
FEATURE_BRANCHES = (
    "feature/login-form",
    "feature/billing-export",
    "feature/search-index",
    "feature/async-mailer",
    "feature/dark-mode",
    "feature/rate-limits",
)

# The plan of a synthetic history: what each test is and what each run is,
# kept beside the real tables for the session so that a run can be added
# after the rest of the history has been scored.
_PLAN_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS bench_tests (
    repository_id bigint, ord int, pk bigint, kind text, rate float8,
    broken_from int, broken_until int, PRIMARY KEY (repository_id, ord)
);
CREATE TEMP TABLE IF NOT EXISTS bench_runs (
    repository_id bigint, n int, pk bigint, run_id bigint, attempt int, sha text,
    branch text, event text, started_at timestamptz, outage bool,
    PRIMARY KEY (repository_id, n)
)
"""

_PLAN_TESTS = """
INSERT INTO bench_tests (repository_id, ord, kind, rate, broken_from, broken_until)
SELECT %(repository)s, ord,
       CASE WHEN u < %(flaky)s THEN 'flaky'
            WHEN u < %(flaky)s + %(broken)s THEN 'broken'
            WHEN u < %(flaky)s + %(broken)s + %(skipped)s THEN 'skipped'
            ELSE 'stable' END,
       0.01 + 0.19 * r,
       b, b + 3 + floor(l * %(history)s / 4)::int
FROM (SELECT ord, random() AS u, random() AS r, random() AS l,
             1 + floor(random() * %(history)s)::int AS b
      FROM generate_series(1, %(tests)s) AS ord) AS s
"""

_MAKE_TESTS = """
WITH made AS (
    INSERT INTO ingest_testcase (repository_id, identity, classname, name, file, first_seen_at)
    SELECT repository_id,
           md5(%(name)s || ':' || ord) || substr(md5(%(name)s || '/' || ord), 1, 8),
           'tests.test_module_' || (ord / 40), 'test_case_' || ord,
           'tests/test_module_' || (ord / 40) || '.py', now()
    FROM bench_tests WHERE repository_id = %(repository)s ORDER BY ord
    RETURNING id, name
)
UPDATE bench_tests AS t SET pk = made.id FROM made
WHERE t.repository_id = %(repository)s AND made.name = 'test_case_' || t.ord
"""

# A run is a second attempt of the run before it (same run id and sha, a
# little later) only at even ordinals, so attempts never chain; runs past
# ``history`` (added later, the run analyze is timed on) are fresh pushes to main.
_PLAN_RUNS = """
INSERT INTO bench_runs (repository_id, n, run_id, attempt, sha, branch, event, started_at, outage)
WITH g AS (
    SELECT n, random() AS r_retry, random() AS r_branch, random() AS r_feature,
           random() AS r_jitter
    FROM generate_series(1, %(runs)s) AS n
), flagged AS (
    SELECT *, (n > 1 AND n <= %(history)s AND mod(n, 2) = 0 AND r_retry < 2 * %(retry)s) AS retry
    FROM g
), based AS (
    SELECT *, SUM(CASE WHEN retry THEN 0 ELSE 1 END) OVER (ORDER BY n) AS base FROM flagged
), firsts AS (
    SELECT *, first_value(r_branch) OVER w AS rb, first_value(r_feature) OVER w AS rf
    FROM based WINDOW w AS (PARTITION BY base ORDER BY n)
)
SELECT %(repository)s, n, 7000000000 + base * 17, CASE WHEN retry THEN 2 ELSE 1 END,
       md5(%(name)s || ':sha:' || base) || substr(md5(%(name)s || ':' || base), 1, 8),
       CASE WHEN rb < %(main)s OR n > %(history)s THEN 'main'
            ELSE (%(features)s::text[])[1 + floor(rf * cardinality(%(features)s::text[]))::int] END,
       CASE WHEN rb < %(main)s OR n > %(history)s THEN 'push' ELSE 'pull_request' END,
       timestamptz '2025-03-03 08:00:00+00'
           + (CASE WHEN retry THEN (n - 1) * 35 + 12 ELSE n * 35 END) * interval '1 minute'
           + floor(r_jitter * 240) * interval '1 second',
       n = ANY(%(outages)s::int[])
FROM firsts
"""

_STORE_RUNS = """
INSERT INTO ingest_workflowrun (
    repository_id, run_id, run_attempt, sha, branch, event, workflow, started_at,
    completed_at, ingested_at, results_count, files_count, file_errors
)
SELECT repository_id, run_id, attempt, sha, branch, event, 'CI', started_at,
       started_at + interval '9 minutes', now(), 0, 1, '[]'::jsonb
FROM bench_runs WHERE repository_id = %(repository)s AND n BETWEEN %(first)s AND %(last)s
ORDER BY n
"""

_LINK_RUNS = """
UPDATE bench_runs AS b SET pk = w.id FROM ingest_workflowrun AS w
WHERE b.repository_id = %(repository)s AND b.n BETWEEN %(first)s AND %(last)s
  AND w.repository_id = b.repository_id AND w.run_id = b.run_id AND w.run_attempt = b.attempt
"""

# One result per test per run, run after run in report order as the import
# writes them, so that the table's physical order matches production's (the
# LATERAL subquery runs once per run). job_loads and results_count are counted
# from the rows as they are written, as the import counts them: reading them
# back run by run would go through the BRIN index, which does not summarize
# pages written since the last vacuum, and so read all new pages for each run.
_STORE_RESULTS = """
WITH stored AS (
    INSERT INTO ingest_testresult (
        test_id, run_id, position, outcome, duration, job, flaky_reruns, rerun_failures,
        message, fingerprint
    )
    SELECT r.pk, run.pk, r.ord, r.outcome, r.duration, 'linux', 0, 0,
           CASE WHEN r.outcome = 'error' THEN 'ConnectionError: could not reach the database service'
                WHEN r.outcome = 'failed' AND r.kind = 'flaky' THEN 'TimeoutError: timed out after 5.0 seconds'
                WHEN r.outcome = 'failed' THEN 'AssertionError: expected 200, got 500'
                ELSE '' END,
           CASE WHEN r.outcome = 'error' THEN substr(md5('outage'), 1, 16)
                WHEN r.outcome = 'failed' THEN substr(md5(r.kind || ':' || r.ord), 1, 16)
                ELSE '' END
    FROM (SELECT * FROM bench_runs
          WHERE repository_id = %(repository)s AND n BETWEEN %(first)s AND %(last)s
          ORDER BY n) AS run
    CROSS JOIN LATERAL (
        SELECT t.pk, t.ord, t.kind,
               CASE WHEN t.kind = 'skipped' THEN 'skipped'
                    WHEN run.outage AND random() < %(outage)s THEN 'error'
                    WHEN t.kind = 'broken' AND run.n BETWEEN t.broken_from AND t.broken_until
                        THEN 'failed'
                    WHEN t.kind = 'flaky' AND random() < t.rate THEN 'failed'
                    ELSE 'passed' END AS outcome,
               CASE WHEN t.kind = 'skipped' THEN NULL
                    ELSE round((0.005 + random() * 0.4)::numeric, 3)::float8 END AS duration
        -- Sorted before random() is drawn, so every database draws the same
        -- numbers for the same test, whatever the plan table's physical order.
        FROM (SELECT * FROM bench_tests WHERE repository_id = run.repository_id ORDER BY ord) AS t
    ) AS r
    RETURNING run_id, job, outcome
), per_job AS (
    SELECT run_id, job, COUNT(*) AS results,
           COUNT(*) FILTER (WHERE outcome IN ('failed', 'error')) AS failures
    FROM stored GROUP BY run_id, job
)
UPDATE ingest_workflowrun AS w SET job_loads = l.loads, results_count = l.results
FROM (
    SELECT run_id, jsonb_object_agg(job, jsonb_build_array(results, failures)) AS loads,
           SUM(results)::int AS results
    FROM per_job GROUP BY run_id
) AS l
WHERE w.id = l.run_id
RETURNING l.results
"""


@dataclass
class History:
    repository: Any  # ingest.models.Repository
    tests: int
    runs: int  # stored so far
    results: int
    kinds: dict[str, int]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--analyze-tests", type=int, default=5000, help="tests in the run analyze is timed on"
    )
    parser.add_argument(
        "--analyze-runs", type=int, default=100, help="runs already scored before that run"
    )
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flakeguard.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("bench.analysis needs PostgreSQL in DATABASE_URL (make bench starts one)")
    call_command("migrate", verbosity=0)

    names = (RECOMPUTE_REPOSITORY, ANALYZE_REPOSITORY)
    _delete_repositories(names)  # left over by an interrupted run
    try:
        recompute = _measure_recompute(args.tests, args.runs, args.rounds)
        analyze = _measure_analyze(args.analyze_tests, args.analyze_runs, max(args.rounds, 5))
    finally:
        started = time.perf_counter()
        _delete_repositories(names)
        print(
            f"deleted the benchmark data in {time.perf_counter() - started:.1f}s", file=sys.stderr
        )

    history, recompute_seconds, verdicts = recompute
    analyze_history, analyze_seconds, analyzed, analyze_rounds = analyze
    seconds = statistics.median(recompute_seconds)
    print()
    print(
        f"Scoring (PostgreSQL; recompute median of {len(recompute_seconds)}, "
        f"runs-analyze median of {analyze_rounds})"
    )
    print(
        f"  {'full recompute':<16} {seconds:>7.2f} s  {history.tests / seconds:>9,.0f} tests/s  "
        f"{history.results / seconds:>11,.0f} results/s  target < {RECOMPUTE_TARGET_SECONDS:g} s"
    )
    print(
        f"  {'':<16} {history.results:,} results: {history.tests:,} tests x {history.runs} runs; "
        f"rounds {', '.join(f'{s:.2f}' for s in recompute_seconds)} s"
    )
    print(
        f"  {'':<16} verdicts: "
        + ", ".join(f"{status} {count:,}" for status, count in sorted(verdicts.items()))
        + f" (planted: {history.kinds.get('flaky', 0):,} flaky, "
        f"{history.kinds.get('broken', 0):,} broken for a stretch)"
    )
    median = statistics.median(analyze_seconds)
    print(
        f"  {'runs-analyze':<16} {median:>7.3f} s  one run of {analyzed['tests']:,} tests after "
        f"{analyze_history.runs - 1} runs; target < {ANALYZE_TARGET_SECONDS:g} s"
    )
    print(
        f"  {'':<16} rounds {', '.join(f'{s:.3f}' for s in analyze_seconds)} s; "
        f"tests {analyzed['tests']:,}, rescored {analyzed['rescored']:,}, "
        f"advanced {analyzed['advanced']:,}"
    )


def _measure_recompute(
    tests: int, runs: int, rounds: int
) -> tuple[History, list[float], dict[str, int]]:
    from django.db.models import Count

    from analysis.models import TestScore
    from analysis.services import recompute_repository

    history = _synthesize(RECOMPUTE_REPOSITORY, tests=tests, runs=runs, seed=0.42)
    timings: list[float] = []
    for round_no in range(1, rounds + 1):
        started = time.perf_counter()
        outcome = recompute_repository(repository=history.repository)
        timings.append(time.perf_counter() - started)
        print(
            f"recompute round {round_no}: {timings[-1]:.2f}s, {outcome['tests']:,} tests, "
            f"{outcome['flaky']:,} flaky",
            file=sys.stderr,
        )
    verdicts = dict(
        TestScore.objects.filter(repository=history.repository)
        .values_list("verdict")
        .annotate(n=Count("pk"))
        .values_list("verdict", "n")
    )
    return history, timings, verdicts


def _measure_analyze(
    tests: int, runs: int, rounds: int
) -> tuple[History, list[float], dict[str, Any], int]:
    from django.db import transaction

    from analysis.services import analyze_run, recompute_repository

    # The history plus one run planned but not stored: it arrives after the
    # rest has been scored, as a new run does.
    history = _synthesize(ANALYZE_REPOSITORY, tests=tests, runs=runs, seed=0.17, extra_runs=1)
    started = time.perf_counter()
    recompute_repository(repository=history.repository)
    print(
        f"{ANALYZE_REPOSITORY}: recomputed {tests:,} tests in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    run_pk, failures = _store_new_run(history)
    print(
        f"{ANALYZE_REPOSITORY}: stored run {runs + 1} ({tests:,} results, {failures} failed), "
        "not analyzed yet",
        file=sys.stderr,
    )
    timings: list[float] = []
    analyzed: dict[str, Any] = {}
    for round_no in range(1, rounds + 1):
        with transaction.atomic():
            started = time.perf_counter()
            analyzed = analyze_run(run_pk=run_pk)
            timings.append(time.perf_counter() - started)
            transaction.set_rollback(True)  # every round starts from the same scores
        assert analyzed.get("analyzed"), analyzed
        print(
            f"analyze round {round_no}: {timings[-1]:.3f}s, {analyzed['tests']:,} tests, "
            f"{analyzed['rescored']:,} rescored, {analyzed['advanced']:,} advanced",
            file=sys.stderr,
        )
    return history, timings, analyzed, rounds


def _synthesize(name: str, *, tests: int, runs: int, seed: float, extra_runs: int = 0) -> History:
    """Plan and store a repository's history of ``runs`` runs; ``extra_runs`` more are planned only."""
    from django.db import connection, transaction

    from ingest.models import Repository

    started = time.perf_counter()
    with transaction.atomic():
        repository = Repository.objects.create(full_name=name)
        params = {
            "repository": repository.pk,
            "name": name,
            "tests": tests,
            "runs": runs + extra_runs,
            "history": runs,
            "flaky": FLAKY_SHARE,
            "broken": BROKEN_SHARE,
            "skipped": SKIPPED_SHARE,
            "retry": RETRY_SHARE,
            "main": MAIN_SHARE,
            "features": list(FEATURE_BRANCHES),
            "outages": sorted({max(1, round(runs * 0.37)), max(1, round(runs * 0.71))}),
        }
        with connection.cursor() as cursor:
            cursor.execute(_PLAN_TABLES)
            cursor.execute("SELECT setseed(%s)", [seed])
            cursor.execute(_PLAN_TESTS, params)
            cursor.execute(_MAKE_TESTS, params)
            cursor.execute(_PLAN_RUNS, params)
            cursor.execute(
                "SELECT kind, COUNT(*) FROM bench_tests WHERE repository_id = %s GROUP BY kind",
                [repository.pk],
            )
            kinds = dict(cursor.fetchall())
        results = _store_runs(repository.pk, 1, runs)
    stored = time.perf_counter() - started
    _vacuum()
    print(
        f"{name}: wrote {results:,} results ({tests:,} tests x {runs} runs) in {stored:.1f}s, "
        f"vacuumed and analyzed in {time.perf_counter() - started - stored:.1f}s",
        file=sys.stderr,
    )
    return History(repository=repository, tests=tests, runs=runs, results=results, kinds=kinds)


def _store_runs(repository_pk: int, first: int, last: int) -> int:
    """Store planned runs ``first``..``last`` with their results, job loads and fingerprints.

    Returns the results stored. Fingerprints per job are counted once here, as
    the import counts them, so that scoring reads them rather than the results.
    """
    from django.db import connection

    from ingest import bulk
    from ingest.models import WorkflowRun

    params = {
        "repository": repository_pk,
        "first": first,
        "last": last,
        "outage": OUTAGE_SHARE,
    }
    with connection.cursor() as cursor:
        cursor.execute(_STORE_RUNS, params)
        cursor.execute(_LINK_RUNS, params)
        cursor.execute(_STORE_RESULTS, params)
        results = sum(results for (results,) in cursor.fetchall())
    fresh = list(
        WorkflowRun.objects.filter(
            repository_id=repository_pk, job_fingerprints__isnull=True
        ).values_list("pk", flat=True)
    )
    counted = bulk.count_job_fingerprints(fresh)
    for run_pk in fresh:
        WorkflowRun.objects.filter(pk=run_pk).update(job_fingerprints=counted.get(run_pk, {}))
    return results


def _store_new_run(history: History) -> tuple[int, int]:
    """Store the planned run after the history, not analyzed; returns its pk and failures."""
    from django.db import transaction

    from ingest.models import WorkflowRun

    n = history.runs + 1
    with transaction.atomic():
        _store_runs(history.repository.pk, n, n)
    history.runs = n
    run = WorkflowRun.objects.get(repository=history.repository, analyzed_at__isnull=True)
    _, failures = run.job_loads["linux"]
    return run.pk, failures


def _vacuum() -> None:
    """What autovacuum would do after a bulk insert, done now rather than during a measurement."""
    from django.db import connection

    from analysis.models import TestScore
    from ingest.models import TestCase, TestResult, WorkflowRun

    with connection.cursor() as cursor:
        for model in (TestResult, TestCase, WorkflowRun, TestScore):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")


def _delete_repositories(names: tuple[str, ...]) -> None:
    """Delete these repositories with everything stored for them."""
    from django.db import connection, transaction

    from ingest.models import Repository, TestResult, WorkflowRun

    repositories = list(Repository.objects.filter(full_name__in=names).values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_tests, bench_runs")
    if not repositories:
        return
    run_pks = list(
        WorkflowRun.objects.filter(repository__in=repositories).values_list("pk", flat=True)
    )
    with transaction.atomic():
        if run_pks:
            # Straight to the table: the ORM would collect the results before deleting them.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {TestResult._meta.db_table} WHERE run_id = ANY(%s)", [run_pks]
                )
        Repository.objects.filter(pk__in=repositories).delete()


if __name__ == "__main__":
    main()
