"""Vendor-specific bulk SQL for ingestion, behind plain functions.

PostgreSQL gets ``INSERT … ON CONFLICT`` with arrays and binary ``COPY``
through psycopg 3; SQLite (the embedded default) gets the ORM's bulk insert
for identities and one prepared multi-row insert for results. Callers never
test the database vendor themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg
from django.db import connection
from django.utils import timezone

from ingest.models import TestCase, TestResult, WorkflowRun, outcome_in_sql

# Column order of a result row as produced by the store and consumed below.
RESULT_COLUMNS = (
    "run_id",
    "test_id",
    "position",
    "outcome",
    "duration",
    "job",
    "flaky_reruns",
    "rerun_failures",
    "message",
    "fingerprint",
)
ResultRow = tuple[int, int, int, str, float | None, str, int, int, str, str]


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def insert_run_if_absent(
    *,
    repository_id: int,
    run_id: int,
    run_attempt: int,
    sha: str,
    branch: str,
    event: str,
    workflow: str,
    started_at: datetime,
    completed_at: datetime | None,
) -> int | None:
    """Insert the run attempt and return its pk, or None when it is already stored.

    The unique constraint serialises concurrent importers of one attempt: the
    second blocks until the first commits, then finds the conflict and skips.
    """
    table = WorkflowRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (repository_id, run_id, run_attempt, sha, branch, event,
                                 workflow, started_at, completed_at, ingested_at,
                                 results_count, files_count, file_errors)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, 0, '[]')
            ON CONFLICT (repository_id, run_id, run_attempt) DO NOTHING
            RETURNING id
            """,
            [
                repository_id,
                run_id,
                run_attempt,
                sha,
                branch,
                event,
                workflow,
                started_at,
                completed_at,
                timezone.now(),
            ],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def known_test_identities(repository_id: int, *, limit: int) -> dict[str, int] | None:
    """identity → pk of every test of the repository, or None when it has more than ``limit``.

    One sequential read of the repository's part of the identity index, where
    looking its tests up one by one would cost an index probe each.
    """
    table = TestCase._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE repository_id = %s LIMIT %s) AS t",
            [repository_id, limit + 1],
        )
        (count,) = cursor.fetchone()
        if count > limit:
            return None
    known: dict[str, int] = {}
    if count:
        # A server-side cursor: the client never holds the whole result at once.
        with connection.chunked_cursor() as cursor:
            cursor.execute(
                f"SELECT identity, id FROM {table} WHERE repository_id = %s", [repository_id]
            )
            while rows := cursor.fetchmany(10_000):
                known.update(rows)
    return known


def upsert_test_identities(
    repository_id: int, identities: Sequence[tuple[str, str, str, str]]
) -> tuple[dict[str, int], list[int]]:
    """Make sure every (identity, classname, name, file) exists; return identity → pk,
    and the pks of the tests this call created.

    One select and, for the tests not known yet, one set-based insert per
    call, whatever the batch size. New tests get their ids in report order: later runs report them in the
    same order, so their rows reach the (test, run, position) primary key in
    ascending order, which PostgreSQL indexes measurably cheaper than rows in
    random order. Concurrent importers of one suite insert in the same order;
    two imports that each create tests the other needs can still deadlock,
    and PostgreSQL then aborts one, which the job runner retries.
    """
    if not identities:
        return {}, []
    ordered = list(identities)
    keys = [identity for identity, _, _, _ in ordered]
    now = timezone.now()
    if is_postgresql():
        table = TestCase._meta.db_table
        connection.ensure_connection()
        # Server-side binding and binary arrays: Django's cursor would quote
        # each of the thousands of elements into the SQL text, and text arrays
        # cost the server four times as much to read.
        with psycopg.Cursor(connection.connection) as cursor:
            # Known tests first, one index probe each. A join would be planned
            # as a hash of the repository's every test (the statistics of a
            # table that has just grown by half a million rows say it is small).
            cursor.execute(
                f"SELECT i, (SELECT id FROM {table} WHERE repository_id = %b AND identity = i) "
                "FROM unnest(%b::text[]) AS i",
                [repository_id, keys],
            )
            found = {identity: pk for identity, pk in cursor.fetchall() if pk is not None}
            new = [entry for entry in ordered if entry[0] not in found]
            if not new:
                return found, []
            cursor.execute(
                f"""
                INSERT INTO {table} (repository_id, identity, classname, name, file, first_seen_at)
                SELECT %b, i, c, n, f, %b
                FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[])
                    WITH ORDINALITY AS t(i, c, n, f, o)
                ORDER BY o
                ON CONFLICT (repository_id, identity) DO NOTHING
                RETURNING identity, id
                """,
                [
                    repository_id,
                    now,
                    [i for i, _, _, _ in new],
                    [c for _, c, _, _ in new],
                    [n for _, _, n, _ in new],
                    [f for _, _, _, f in new],
                ],
            )
            created = cursor.fetchall()
            found.update(created)
            # Tests another import created meanwhile: visible now that it has
            # committed (the insert waited for it).
            others = [identity for identity, _, _, _ in new if identity not in found]
            if others:
                cursor.execute(
                    f"SELECT identity, id FROM {table} "
                    "WHERE repository_id = %b AND identity = ANY(%b::text[])",
                    [repository_id, others],
                )
                found.update(cursor.fetchall())
            return found, sorted(pk for _, pk in created)

    def lookup() -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(keys), 500):
            found.update(
                TestCase.objects.filter(
                    repository_id=repository_id, identity__in=keys[start : start + 500]
                ).values_list("identity", "id")
            )
        return found

    # SQLite writes one transaction at a time: what was not there before is ours.
    known = lookup()
    TestCase.objects.bulk_create(
        [
            TestCase(
                repository_id=repository_id,
                identity=identity,
                classname=classname,
                name=name,
                file=file,
                first_seen_at=now,
            )
            for identity, classname, name, file in ordered
            if identity not in known
        ],
        ignore_conflicts=True,
        batch_size=500,
    )
    found = lookup()
    return found, sorted(pk for identity, pk in found.items() if identity not in known)


_COPY_FLUSH_BYTES = 64 * 1024
_COPY_TYPES = ["int8", "int8", "int4", "text", "float8", "text", "int2", "int2", "text", "text"]


class ResultSink:
    """Appends result rows; on PostgreSQL through one binary COPY kept open across batches.

    Keeping the COPY open, and sending its data in small flushes, lets the
    server index rows on the other core while this process parses the next
    ones. ``pause()`` ends the COPY when another statement must run on the
    connection (an identity upsert, a delete); the next ``write`` opens a new
    one. Leaving the ``with`` block on an exception aborts the COPY, and the
    transaction with it.
    """

    def __init__(self) -> None:
        self._postgresql = is_postgresql()
        self._cursor = None
        self._context = None
        self._copy = None

    def __enter__(self) -> ResultSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._end(exc)

    def write(self, rows: list[ResultRow]) -> int:
        if not self._postgresql:
            return _insert_rows(rows)
        if self._copy is None:
            self._begin()
        write_row = self._copy.write_row
        for row in rows:
            write_row(row)
        return len(rows)

    def pause(self) -> None:
        self._end(None)

    def _begin(self) -> None:
        from psycopg.copy import LibpqWriter

        table = TestResult._meta.db_table
        self._cursor = connection.cursor()
        raw = self._cursor.cursor  # the psycopg 3 cursor under Django's wrapper
        writer = LibpqWriter(raw)
        # psycopg leaves up to 1 MiB in libpq's buffer before sending it; a
        # report's rows often fit in that, so the server would see nothing
        # until the end. Small flushes let it index while we parse.
        writer.flush_threshold = _COPY_FLUSH_BYTES
        self._context = raw.copy(
            f"COPY {table} ({', '.join(RESULT_COLUMNS)}) FROM STDIN (FORMAT BINARY)",
            writer=writer,
        )
        self._copy = self._context.__enter__()
        self._copy.set_types(_COPY_TYPES)

    def _end(self, exc: BaseException | None) -> None:
        if self._context is None:
            return
        context, cursor = self._context, self._cursor
        self._context = self._copy = self._cursor = None
        try:
            if exc is None:
                context.__exit__(None, None, None)
            else:
                context.__exit__(type(exc), exc, exc.__traceback__)
        finally:
            cursor.close()


def delete_tests_without_results(repository_id: int, ranges: Sequence[tuple[int, int]]) -> int:
    """Delete the tests with pk in these inclusive ranges that have no result at all.

    For the tests an import created for a report it then refused: without
    their results they are not tests of the repository.
    """
    tests, results = TestCase._meta.db_table, TestResult._meta.db_table
    deleted = 0
    with connection.cursor() as cursor:
        for low, high in ranges:
            cursor.execute(
                f"DELETE FROM {tests} WHERE repository_id = %s AND id >= %s AND id <= %s "
                f"AND NOT EXISTS (SELECT 1 FROM {results} r WHERE r.test_id = {tests}.id)",
                [repository_id, low, high],
            )
            deleted += cursor.rowcount
    return deleted


def delete_results(*, run_pk: int, after_position: int, upto_position: int) -> int:
    """Take back the results a run wrote in (after_position, upto_position]."""
    table = TestResult._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE run_id = %s AND position > %s AND position <= %s",
            [run_pk, after_position, upto_position],
        )
        return cursor.rowcount


# Failure fingerprints kept per job of a run (WorkflowRun.job_fingerprints).
JOB_FINGERPRINTS_KEPT = 3


def top_fingerprints(counts: dict[str, int]) -> list[list[object]]:
    """The most common fingerprints with their counts, most common first (ties by fingerprint)."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [[fingerprint, count] for fingerprint, count in ranked[:JOB_FINGERPRINTS_KEPT]]


def count_job_fingerprints(run_pks: list[int]) -> dict[int, dict[str, list[list[object]]]]:
    """{run pk: {job label: [[fingerprint, failures], ...]}}, counted from the stored results."""
    table = TestResult._meta.db_table
    counts: dict[tuple[int, str], dict[str, int]] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(run_pks), 1000):
            chunk = run_pks[start : start + 1000]
            cursor.execute(
                f"SELECT run_id, job, fingerprint, COUNT(*) FROM {table} "
                f"WHERE run_id IN ({', '.join(['%s'] * len(chunk))}) AND {outcome_in_sql()} "
                f"AND fingerprint <> '' GROUP BY run_id, job, fingerprint",
                chunk,
            )
            for run_pk, job, fingerprint, failures in cursor.fetchall():
                counts.setdefault((run_pk, job), {})[fingerprint] = failures
    found: dict[int, dict[str, list[list[object]]]] = {}
    for (run_pk, job), per_fingerprint in counts.items():
        found.setdefault(run_pk, {})[job] = top_fingerprints(per_fingerprint)
    return found


def count_job_loads(run_pks: list[int]) -> dict[int, dict[str, list[int]]]:
    """{run pk: {job label: [results, failures]}}, counted from the stored results."""
    table = TestResult._meta.db_table
    loads: dict[int, dict[str, list[int]]] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(run_pks), 1000):
            chunk = run_pks[start : start + 1000]
            cursor.execute(
                f"SELECT run_id, job, COUNT(*), "
                f"SUM(CASE WHEN {outcome_in_sql()} THEN 1 ELSE 0 END) "
                f"FROM {table} WHERE run_id IN ({', '.join(['%s'] * len(chunk))}) "
                f"GROUP BY run_id, job",
                chunk,
            )
            for run_pk, job, results, failures in cursor.fetchall():
                loads.setdefault(run_pk, {})[job] = [results, int(failures or 0)]
    return loads


def write_results(rows: list[ResultRow]) -> int:
    """Append result rows in one go: binary COPY on PostgreSQL, executemany elsewhere."""
    with ResultSink() as sink:
        return sink.write(rows)


def _insert_rows(rows: list[ResultRow]) -> int:
    # One prepared statement over all rows: the ORM's per-object bulk_create
    # spends most of its time building model instances we never use.
    table = TestResult._meta.db_table
    placeholders = ", ".join(["%s"] * len(RESULT_COLUMNS))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({', '.join(RESULT_COLUMNS)}) VALUES ({placeholders})", rows
        )
    return len(rows)
