"""The closed set of Celery queues FlakeGuard uses, named as operators see them."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    RUNS_INGEST = "runs-ingest"
    RUNS_ANALYZE = "runs-analyze"
    TESTS_RECOMPUTE = "tests-recompute"
    POLLING = "polling"
