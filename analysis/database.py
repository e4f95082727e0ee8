"""Vendor-specific SQL of analysis, behind plain functions: the repository lock, score upserts.

The one-analysis-per-repository lock is, on PostgreSQL, a transaction-scoped
advisory lock keyed by the repository: taken in the database that holds the
data, released by commit or rollback (a dead worker's lock dies with its
connection), and never a get-then-set dance. SQLite allows one writer at a
time anyway. Scores are upserted with one statement over arrays, since an
INSERT with thousands of placeholders spends its time converting them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from django.db import connection
from django.utils import timezone
from psycopg.types.json import Jsonb

from analysis.models import TestScore

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

    A recompute batch groups a few hundred thousand results by test; with the
    default 4 MB the aggregate spills to disk or the planner turns to scanning
    the whole table, which measured 1.5-2.5x slower.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = '64MB'")


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
