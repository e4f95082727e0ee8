"""How a job's service says what became of an attempt; the runner picks the next state by class.

Retries are chosen by error class: bad input never succeeds on a second try,
a broken network or a busy database may.
"""

from __future__ import annotations

import redis.exceptions
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError


class PermanentJobError(Exception):
    """The job cannot succeed as it stands (bad input, refused by a remote); never retried."""


class TransientJobError(Exception):
    """The job may succeed later (network, rate limit, lock contention); retried with backoff."""


class ContinueLater(Exception):
    """The job made progress and stops here: run it again after ``delay`` seconds.

    For long jobs that checkpoint (a backfill) and for waits that are not
    failures (a spent rate limit): the attempt is not counted.
    """

    def __init__(self, reason: str, *, delay: float = 0.0) -> None:
        super().__init__(reason)
        self.delay = max(0.0, delay)


class JobFailed(Exception):
    """Raised by a job's Celery task after its job went DEAD, so that Celery, and
    Flower with it, record the task as failed. The job table already holds the error."""


class LeaseLostError(Exception):
    """A later claim owns the job now: this attempt must stop without recording anything."""


# Errors that say "try again later". Anything else is a bug or bad input, and a
# retry would only repeat it, so it goes to the dead-letter state at once.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientJobError,
    ConnectionError,
    TimeoutError,
    OperationalError,
    InterfaceError,
    # Redis away (the shared cache and rate budget live there): not Python's own
    # ConnectionError, but as passing.
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    SoftTimeLimitExceeded,
)
