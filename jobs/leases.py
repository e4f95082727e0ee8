"""How long a claim holds a job, and the thread that keeps a running job's claim alive.

A lease is short (``FLAKEGUARD_JOB_LEASE_SECONDS``, 30 s) and renewed every
third of it while the job runs, so a worker that dies (SIGKILL, OOM, a lost
node) gives its job up within half a minute instead of after the task's time
limit, and the job runs again on another worker. The renewal runs in a thread
with its own database connection: it keeps going while the job's own
transaction is busy for minutes, and it stops with the process.

On the embedded default (no broker, tasks run in-process) nothing can take a
job over, and SQLite allows one writer at a time, so no thread renews: the
claim is made long enough for the longest task instead.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from types import TracebackType

from django.conf import settings
from django.db import connection
from django.utils import timezone

from jobs.models import Job, JobState

logger = logging.getLogger(__name__)


def renewed() -> bool:
    """Whether leases are renewed while jobs run (a broker and real workers)."""
    return not settings.CELERY_TASK_ALWAYS_EAGER


def lease_seconds() -> float:
    if renewed():
        return settings.FLAKEGUARD_JOB_LEASE_SECONDS
    return settings.CELERY_TASK_TIME_LIMIT + 5 * 60


def lease_deadline():
    return timezone.now() + timedelta(seconds=lease_seconds())


class LeaseKeeper:
    """``with LeaseKeeper(job):`` renews the job's lease until the block ends.

    Renews only the claim this worker made (same attempt, same start), so a
    worker that stalled past its lease never extends the claim that replaced it.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.interval = max(1.0, lease_seconds() / 3)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def __enter__(self) -> LeaseKeeper:
        if renewed():
            self._thread = threading.Thread(
                target=self._renew, name=f"lease-{self.job.pk}", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread is not None:
            # A renewal may be waiting on the job's row, which this attempt's
            # own transaction can hold; it is done once that commits.
            self._thread.join(timeout=self.interval + 30)

    def _renew(self) -> None:
        try:
            while not self._done.wait(self.interval):
                try:
                    held = Job.objects.filter(
                        pk=self.job.pk,
                        state=JobState.RUNNING,
                        attempts=self.job.attempts,
                        started_at=self.job.started_at,
                    ).update(lease_expires_at=lease_deadline())
                except Exception as exc:  # a database blip: try again at the next beat
                    logger.warning("job %s: lease not renewed: %s", self.job.pk, exc)
                    connection.close()
                    continue
                if not held:
                    self.lost = True
                    logger.warning("job %s: lease lost to a later claim", self.job.pk)
                    return
        finally:
            connection.close()  # this thread's own connection
