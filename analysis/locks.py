"""The one-analysis-per-repository lock (vendor SQL kept here, behind one function).

On PostgreSQL a transaction-scoped advisory lock keyed by the repository: it is
taken in the database that holds the data, released by commit or rollback
(a dead worker's lock dies with its connection), and never needs a
get-then-set dance. SQLite allows one writer at a time anyway.
"""

from __future__ import annotations

from django.db import connection

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
