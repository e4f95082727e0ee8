"""Vendor-specific SQL of analysis, behind plain functions: the repository lock, score upserts, retention.

The one-analysis-per-repository lock is, on PostgreSQL, a transaction-scoped
advisory lock keyed by the repository: taken in the database that holds the
data, released by commit or rollback (a dead worker's lock dies with its
connection), and never a get-then-set dance. SQLite allows one writer at a
time anyway. Scores are upserted with one statement over arrays, since an
INSERT with thousands of placeholders spends its time converting them.
Retention deletes results a bounded batch at a time through the index by run,
and keeps that BRIN index from widening over the pages it empties.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from analysis.models import TestScore
from analysis.scoring import TestStatus
from analysis.tallies import forget_tally, has_pending_tallies, settle_sql
from ingest.junit import FAILED_OUTCOMES, Outcome
from ingest.models import TestResult, WorkflowRun

logger = logging.getLogger(__name__)

# First half of the two-part advisory key, so FlakeGuard's locks never collide
# with another application's on the same database.
_NAMESPACE = 0x464C4B  # "FLK"


def lock_repository_analysis(repository_id: int) -> None:
    """Wait for and hold the repository's analysis lock until the transaction ends."""
    if connection.vendor != "postgresql":
        return
    if not connection.in_atomic_block:
        raise RuntimeError("lock_repository_analysis must be called inside a transaction")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s::int, %s::int)", [_NAMESPACE, repository_id % 2**31]
        )


def allow_large_aggregates() -> None:
    """Let this transaction's aggregates and sorts use more memory than the default.

    A recompute batch groups a few hundred thousand results by test, and a
    large run's analysis joins half a million scores by hash; with the default
    4 MB they spill to disk or the planner turns to scanning the whole table,
    which measured 1.5-2.5x slower.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = '256MB'")
            # The planner's costs for these statements are large enough to
            # compile them, which takes longer (a third of a second) than most run.
            cursor.execute("SET LOCAL jit = off")


# Columns of TestScore written by upsert_scores, in the order of each row.
SCORE_COLUMNS = (
    ("test_id", "bigint"),
    ("repository_id", "bigint"),
    ("verdict", "text"),
    ("score", "float8"),
    ("results", "int"),
    ("failures", "int"),
    ("evidence_weight", "float8"),
    ("half_life", "float8"),
    ("clean_since", "int"),
    ("pending", "bool"),
    ("latest_result_at", "timestamptz"),
    ("flaky_since", "timestamptz"),
    ("last_failure_at", "timestamptz"),
    ("components", "jsonb"),
    ("evidence", "jsonb"),
    ("at_rest", "bool"),
    ("tallied_through", "bigint"),
)
_JSON_COLUMNS = {"components", "evidence"}


def upsert_scores(rows: Sequence[Sequence[Any]]) -> None:
    """Insert or replace TestScore rows given as tuples in SCORE_COLUMNS order."""
    if not rows:
        return
    names = [name for name, _ in SCORE_COLUMNS]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
    table = TestScore._meta.db_table
    if connection.vendor != "postgresql":
        json_at = [i for i, name in enumerate(names) if name in _JSON_COLUMNS]
        now = timezone.now()
        prepared = []
        for row in rows:
            values = [
                json.dumps(value) if i in json_at else _sqlite_value(value)
                for i, value in enumerate(row)
            ]
            prepared.append((*values, _sqlite_value(now)))
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} ({', '.join(names)}, updated_at) "
                f"VALUES ({', '.join(['%s'] * (len(names) + 1))}) "
                f"ON CONFLICT (test_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at",
                prepared,
            )
        return
    columns = list(zip(*rows, strict=True))
    # psycopg types a list by its elements: make each column one Python type.
    params = [
        [Jsonb(v) for v in column]
        if name in _JSON_COLUMNS
        else [float(v) for v in column]
        if kind == "float8"
        else list(column)
        for (name, kind), column in zip(SCORE_COLUMNS, columns, strict=True)
    ]
    arrays = ", ".join(f"%b::{kind}[]" for _, kind in SCORE_COLUMNS)  # binary: no escaping
    connection.ensure_connection()
    # A server-side-binding cursor: Django's default client-side binding would
    # quote every array element into the SQL text, which costs more than the upsert.
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(names)}, updated_at) "
            f"SELECT *, now() FROM unnest({arrays}) "
            f"ON CONFLICT (test_id) DO UPDATE SET {updates}, updated_at = now()",
            params,
        )


def _sqlite_value(value: Any) -> Any:
    # Django stores aware datetimes on SQLite as ISO text in UTC.
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    return value


# Below this many tests a batch's probes cost less than a scan of its results.
DENSE_MIN_TESTS = 10_000


def apply_quiet_tests_in_bulk(
    *,
    run_pk: int,
    repository_id: int,
    after_test: int,
    upto_test: int,
    branch: str,
    started_at: datetime,
    failed_on_commit: Sequence[int],
    new_tests: tuple[int, int] | None,
    tally: int,
    min_results: int,
    min_half_life: float,
    expected_tests: int = 0,
) -> tuple[int, int, list[int], int]:
    """Apply a run to its tests that add no evidence, in a few set-based statements.

    Only the run's tests with pk in (after_test, upto_test] are looked at (a
    large run is applied a batch at a time), and of those only the ones that
    may need more than a tally: a result that is not a plain pass, a score
    not at rest, a failure after this run began, a pass on a commit the test
    failed on, or a test this run's import created. The others, the many
    tests at rest that only passed, are counted by ``tally`` (the
    ``PendingTally`` of this batch, which the caller recorded) and not
    written at all.

    Of the tests looked at, those that only passed (or were skipped) and have
    never had evidence are applied here, after their pending tallies are
    folded in: the ones already scored as ``analysis.scoring.advance_clean``
    would advance them, the ones never scored with ``quiet_verdict``'s
    verdict. Anything else is left to the caller, whose test pks are
    returned with the counts (advanced, inserted) and the number of the
    run's results the statements looked at. PostgreSQL only; the caller
    holds the analysis lock.

    When the scores to look at are a tenth or more of the ``expected_tests``
    of the batch (a young repository, where few tests are at rest yet), the
    batch's results are read in one pass and every test of it is looked at
    (a probe per candidate would cost more than the scan it avoids), and the
    batch's tally, which then counts nothing, is deleted.
    """
    results, scores = TestResult._meta.db_table, TestScore._meta.db_table
    runs = WorkflowRun._meta.db_table
    quiet_statuses = [str(TestStatus.NEW), str(TestStatus.STABLE)]
    new_from, new_upto = new_tests or (1, 0)
    in_range = "test_id > %(after)s AND test_id <= %(upto)s"
    # A probe per score, not a semi-join: the statistics never know the run
    # yet (it has just been stored), and would have its half a million rows
    # joined against the scores instead.
    in_run = (
        f"(SELECT 1 FROM {results} r WHERE r.test_id = s.test_id AND r.run_id = %(run)s "
        "LIMIT 1) IS NOT NULL"
    )
    params = {
        "run": run_pk,
        "repository": repository_id,
        "after": after_test,
        "upto": upto_test,
        "new_from": new_from,
        "new_upto": new_upto,
        "skipped": str(Outcome.SKIPPED),
        "passed": str(Outcome.PASSED),
        "failed": sorted(str(o) for o in FAILED_OUTCOMES),
        "failed_on_commit": list(failed_on_commit),
        "quiet_statuses": quiet_statuses,
        "branch": branch,
        "started": started_at,
        "below": tally,
        "mark": tally - 1,
    }
    # Only when there is something to find: each scans the run's rows.
    created = (
        f"UNION SELECT test_id FROM {results} WHERE run_id = %(run)s AND {in_range} "
        "AND test_id >= %(new_from)s AND test_id <= %(new_upto)s"
        if new_tests
        else ""
    )
    failed_sql = (
        f"UNION SELECT test_id FROM {results} WHERE run_id = %(run)s AND {in_range} "
        "AND test_id = ANY(%(failed_on_commit)s)"
        if failed_on_commit
        else ""
    )
    with connection.cursor() as cursor:
        dense = (
            expected_tests >= DENSE_MIN_TESTS
            and (_busy_scores(cursor, params) + _created_in(new_tests, after_test, upto_test)) * 10
            >= expected_tests
        )
        if dense:
            candidates_and_counts = f"""run_tests AS (
                SELECT test_id, COUNT(*) AS n,
                       COUNT(*) FILTER (WHERE outcome = %(skipped)s) AS skipped,
                       BOOL_OR(outcome = ANY(%(failed)s) OR flaky_reruns > 0) AS eventful
                FROM {results} WHERE run_id = %(run)s AND {in_range}
                GROUP BY test_id
            )"""
        else:
            candidates_and_counts = f"""candidates AS (
                -- result_eventful_idx: the results that are not plain passes
                SELECT test_id FROM {results}
                WHERE run_id = %(run)s AND {in_range}
                    AND (NOT (outcome = %(passed)s) OR flaky_reruns > 0)
                UNION
                -- score_busy_idx: scores not at rest
                SELECT s.test_id FROM {scores} s
                WHERE s.repository_id = %(repository)s AND NOT s.at_rest
                    AND s.{in_range} AND {in_run}
                UNION
                -- score_last_failure_idx: a run older than the test's last failure
                SELECT s.test_id FROM {scores} s
                WHERE s.last_failure_at > %(started)s AND s.{in_range} AND {in_run}
                {created}
                {failed_sql}
            ), run_tests AS (
                SELECT c.test_id, t.n, t.skipped, t.eventful
                FROM candidates c CROSS JOIN LATERAL (
                    SELECT COUNT(*) AS n,
                           COUNT(*) FILTER (WHERE r.outcome = %(skipped)s) AS skipped,
                           BOOL_OR(r.outcome = ANY(%(failed)s) OR r.flaky_reruns > 0) AS eventful
                    FROM {results} r WHERE r.test_id = c.test_id AND r.run_id = %(run)s
                ) t
            )"""
        # Dropped at commit; dropped here too when one transaction applies several runs.
        cursor.execute("DROP TABLE IF EXISTS analyze_run_tests")
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE analyze_run_tests ON COMMIT DROP AS
            WITH {candidates_and_counts}
            SELECT t.test_id, t.n, t.skipped, s.test_id IS NULL AS unscored,
                   COALESCE(
                       NOT t.eventful
                       AND NOT t.test_id = ANY(%(failed_on_commit)s)
                       AND (s.test_id IS NULL OR (
                           s.evidence_weight = 0 AND NOT s.pending
                           AND s.verdict = ANY(%(quiet_statuses)s)
                           AND NOT COALESCE(s.components -> 'pending_branches' ? %(branch)s, FALSE)
                           AND (s.last_failure_at IS NULL OR s.last_failure_at <= %(started)s)
                       ))
                       -- A test never scored, with results in runs applied before
                       -- (an import that found it before its creator's run was
                       -- analyzed): its history is read in full.
                       AND (s.test_id IS NOT NULL OR NOT EXISTS (
                           SELECT 1 FROM {results} o JOIN {runs} w ON w.id = o.run_id
                           WHERE o.test_id = t.test_id AND o.run_id <> %(run)s
                               AND (w.analyzed_at IS NOT NULL OR o.test_id <= w.analyzed_upto_test)
                       )),
                       FALSE
                   ) AS quiet
            -- One probe per candidate (OFFSET 0 keeps it one): a join would
            -- be planned as a scan of every score.
            FROM run_tests t LEFT JOIN LATERAL (
                SELECT * FROM {scores} WHERE test_id = t.test_id OFFSET 0
            ) s ON TRUE
            """,
            params,
        )
        # Statistics, so that the statements below join by hash when the
        # candidates are many (a repository's first runs).
        cursor.execute("ANALYZE analyze_run_tests")
        # What earlier tallies counted for these tests goes into their scores
        # first: they are about to be written.
        if has_pending_tallies(repository_id, below=tally):
            cursor.execute(
                settle_sql(
                    "s.test_id IN (SELECT test_id FROM analyze_run_tests WHERE NOT unscored)"
                ),
                params,
            )
        # advance_clean with no evidence: results grow, the status follows them,
        # recency is restated unchanged (score 0, factor 1), skips are counted.
        cursor.execute(
            f"""
            UPDATE {scores} s SET
                results = s.results + t.n,
                verdict = CASE WHEN s.results + t.n < %(min_results)s THEN %(new)s ELSE %(stable)s END,
                score = 0,
                flaky_since = NULL,
                latest_result_at = %(started)s,
                -- Restated only where missing or a skip is to be counted: a row
                -- whose components stay as they are is cheaper to rewrite.
                components = CASE
                    WHEN t.skipped = 0 AND s.components ? 'recency' THEN s.components
                    ELSE s.components
                    || jsonb_build_object('recency', jsonb_build_object(
                        'clean_since', s.clean_since,
                        'half_life', COALESCE(s.components -> 'recency' -> 'half_life',
                            to_jsonb(round(s.half_life::numeric, 1))),
                        'factor', 1.0,
                        'jobs', COALESCE(s.components -> 'recency' -> 'jobs', '[]'::jsonb),
                        'judged', COALESCE((s.components -> 'recency' ->> 'judged')::int, 0),
                        'event_points',
                            COALESCE((s.components -> 'recency' ->> 'event_points')::int, 0)))
                    || CASE WHEN t.skipped > 0 THEN jsonb_build_object(
                        'skipped', COALESCE((s.components ->> 'skipped')::int, 0) + t.skipped)
                       ELSE '{{}}'::jsonb END
                END,
                -- analysis.scoring.is_at_rest of the verdict written
                at_rest = s.results + t.n >= %(min_results)s
                    AND COALESCE(jsonb_array_length(s.components -> 'pending_branches'), 0) = 0,
                tallied_through = %(tally)s,
                updated_at = now()
            FROM analyze_run_tests t
            WHERE s.test_id = t.test_id AND t.quiet AND NOT t.unscored
            """,
            {
                "min_results": min_results,
                "new": str(TestStatus.NEW),
                "stable": str(TestStatus.STABLE),
                "started": started_at,
                "tally": tally,
            },
        )
        advanced = cursor.rowcount
        # quiet_verdict: the verdict of a test whose whole history is quiet.
        cursor.execute(
            f"""
            INSERT INTO {scores} (test_id, repository_id, verdict, score, results, failures,
                evidence_weight, half_life, clean_since, pending, latest_result_at,
                flaky_since, last_failure_at, components, evidence, at_rest, tallied_through,
                updated_at)
            SELECT t.test_id, %(repository)s,
                   CASE WHEN t.n < %(min_results)s THEN %(new)s ELSE %(stable)s END,
                   0, t.n, 0, 0, %(half_life)s, 0, FALSE, %(started)s, NULL, NULL,
                   jsonb_build_object('outage_failures', 0, 'skipped', t.skipped), '[]'::jsonb,
                   FALSE, %(tally)s, now()
            FROM analyze_run_tests t WHERE t.quiet AND t.unscored
            """,
            {
                "repository": repository_id,
                "min_results": min_results,
                "new": str(TestStatus.NEW),
                "stable": str(TestStatus.STABLE),
                "half_life": float(min_half_life),
                "started": started_at,
                "tally": tally,
            },
        )
        inserted = cursor.rowcount
        cursor.execute("SELECT test_id FROM analyze_run_tests WHERE NOT quiet ORDER BY test_id")
        others = [test_pk for (test_pk,) in cursor.fetchall()]
        cursor.execute("SELECT COALESCE(SUM(n), 0) FROM analyze_run_tests")
        looked_at = int(cursor.fetchone()[0])
    if dense:
        # Every test of the batch was looked at: its tally counts nothing, and
        # left in place it would make the next batches settle for nothing.
        forget_tally(tally)
    return advanced, inserted, others, looked_at


def _busy_scores(cursor: Any, params: dict[str, Any]) -> int:
    """Scores of the batch's range not at rest (an index-only count on score_busy_idx)."""
    cursor.execute(
        f"SELECT COUNT(*) FROM {TestScore._meta.db_table} WHERE repository_id = %(repository)s "
        "AND NOT at_rest AND test_id > %(after)s AND test_id <= %(upto)s",
        params,
    )
    return int(cursor.fetchone()[0])


def _created_in(new_tests: tuple[int, int] | None, after_test: int, upto_test: int) -> int:
    """How many of the tests the run's import created lie in (after_test, upto_test]."""
    if new_tests is None:
        return 0
    low, high = max(new_tests[0], after_test + 1), min(new_tests[1], upto_test)
    return max(0, high - low + 1)


# --- retention: removing old results ------------------------------------------

# The index of results by run (migration ingest.0002): BRIN on PostgreSQL.
_RESULT_RUN_INDEX = "result_run_idx"


@dataclass(frozen=True, slots=True)
class DeletedResults:
    """What one ``delete_results_of_runs`` statement removed."""

    rows: int
    tests: frozenset[int]  # the tests those results were of
    pages: frozenset[int]  # the heap pages they were on (PostgreSQL; empty elsewhere)


def delete_results_of_runs(run_pks: Sequence[int], *, limit: int) -> DeletedResults:
    """Delete at most ``limit`` results of these runs, in one statement.

    The rows are found through ``result_run_idx`` (on PostgreSQL a bitmap scan
    of the BRIN index by run, stopped after ``limit`` rows) and deleted by
    their physical address (``ctid``, a TID scan; ``rowid`` on SQLite), so a
    statement never touches more than ``limit`` rows however large the runs,
    and never scans the table. Fewer than ``limit`` rows deleted means the
    runs have none left.
    """
    if not run_pks:
        return DeletedResults(0, frozenset(), frozenset())
    table = TestResult._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM {table} WHERE run_id = ANY(%s) LIMIT %s)) "
                "RETURNING test_id, (ctid::text::point)[0]::bigint",
                [list(run_pks), limit],
            )
            rows = cursor.fetchall()
            return DeletedResults(
                len(rows), frozenset(r[0] for r in rows), frozenset(r[1] for r in rows)
            )
        cursor.execute(
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
            f"WHERE run_id IN (SELECT value FROM json_each(%s)) LIMIT %s) RETURNING test_id",
            [json.dumps(list(run_pks)), limit],
        )
        rows = cursor.fetchall()
        return DeletedResults(len(rows), frozenset(r[0] for r in rows), frozenset())


def flag_scores(test_pks: Sequence[int], *, component: str) -> int:
    """Set ``components[component] = true`` on the scores of these tests that lack it; returns how many."""
    if not test_pks:
        return 0
    table = TestScore._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} SET components = components || jsonb_build_object(%s::text, true) "
                "WHERE test_id = ANY(%s) AND NOT components ? %s",
                [component, list(test_pks), component],
            )
        else:
            cursor.execute(
                f"UPDATE {table} SET components = json_set(components, '$.' || %s, json('true')) "
                "WHERE test_id IN (SELECT value FROM json_each(%s)) "
                "AND json_extract(components, '$.' || %s) IS NULL",
                [component, json.dumps(list(test_pks)), component],
            )
        return cursor.rowcount


def forget_result_page_summaries(pages: Iterable[int]) -> int:
    """Drop the BRIN summaries of ``result_run_idx`` over these heap pages; returns how many ranges.

    A BRIN summary only ever widens. Left as it is, a range of pages emptied
    by retention keeps the old runs' ids, and once vacuum hands the pages to
    new runs its summary spans old to new: every later run lookup would read
    it, and within one retention period every range of the table (measured
    by ``bench.storage``). A range with no summary is summarized afresh by the
    next vacuum, from the rows it leaves (``vacuum_results``). PostgreSQL
    only; a database user that does not own the index can not do this, which
    is logged, not raised.
    """
    pages = sorted(set(pages))
    if connection.vendor != "postgresql" or not pages:
        return 0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE((SELECT option_value::int FROM pg_options_to_table(reloptions) "
                "WHERE option_name = 'pages_per_range'), 128) FROM pg_class WHERE relname = %s",
                [_RESULT_RUN_INDEX],
            )
            found = cursor.fetchone()
            if found is None:
                return 0
            (per_range,) = found
            ranges = sorted({page - page % per_range for page in pages})
            cursor.execute(
                "SELECT COUNT(brin_desummarize_range(%s::regclass, r)) FROM unnest(%s::bigint[]) r",
                [_RESULT_RUN_INDEX, ranges],
            )
            return len(ranges)
    except DatabaseError as exc:
        logger.warning("the summaries of %s were not reset: %s", _RESULT_RUN_INDEX, exc)
        return 0


def vacuum_results() -> int | None:
    """VACUUM, then ANALYZE, the results table; the dead rows it could not remove, or None.

    After retention it turns the removed rows into free space for new runs,
    summarizes the ranges ``forget_result_page_summaries`` reset (from the
    rows left) and refreshes the planner's statistics. Rows deleted after a
    transaction still open began stay, for that transaction, and are counted
    in the answer. PostgreSQL only, and not inside a transaction, which VACUUM
    refuses: None there.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return None
    table = TestResult._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM {table}")
        # What vacuum reported, before ANALYZE restates it from a sample.
        cursor.execute(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = %s::regclass", [table]
        )
        found = cursor.fetchone()
        cursor.execute(f"ANALYZE {table}")
    return int(found[0]) if found else 0
