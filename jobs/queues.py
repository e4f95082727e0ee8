"""The closed set of Celery queues FlakeGuard uses, named as operators see them."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    RUNS_INGEST = "runs-ingest"
    RUNS_ANALYZE = "runs-analyze"
    TESTS_RECOMPUTE = "tests-recompute"
    POLLING = "polling"
    # Beat's short periodic work (the sweeper, the fan-out of polls and
    # recomputes) on a queue of its own: a retry waits for the sweeper, which
    # must not queue behind 10-minute backfill slices on ``polling``.
    SCHEDULER = "scheduler"
