"""One delivery of a job's message to a worker, and what it leaves behind when it cannot run.

A message must never be consumed without its job going somewhere:

- the job's claim is held by another worker (a redelivery after that worker
  died, or a duplicate): a recheck is sent for the moment its lease runs out,
  so a dead worker's job runs again within a lease, not after the sweeper's
  much longer wait. A live holder renews its lease and the recheck finds it
  still running and stops (one recheck per delivery, never a chain);
- the database is away (a restart, a failover): the message goes back to its
  queue after a short pause instead of being acknowledged with nothing done;
- the job went DEAD: the task fails, so Celery and Flower show a failed task.
"""

from __future__ import annotations

import logging
import time

from celery import Task
from celery.exceptions import Reject
from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from jobs.errors import JobFailed
from jobs.models import Job, JobState
from jobs.registry import JobService, job_type
from jobs.runner import Outcome, run_job

logger = logging.getLogger(__name__)

# Pause before a message goes back to its queue while the database is away, so
# a worker does not spin through its queue (each pause holds one pool slot).
DATABASE_AWAY_PAUSE_SECONDS = 2.0


def run_delivered(
    task: Task, job_id: int, service: JobService, *, kind: str, recheck: bool = False
) -> None:
    eager = bool(task.request.is_eager)
    try:
        outcome = run_job(job_id, service, kind=kind)
    except (OperationalError, InterfaceError) as exc:
        if eager:
            raise
        logger.warning("job %s: database unavailable, message back to its queue: %s", job_id, exc)
        close_old_connections()
        time.sleep(DATABASE_AWAY_PAUSE_SECONDS)
        raise Reject(f"database unavailable: {exc}", requeue=True) from exc
    if eager:
        return
    if outcome == Outcome.DEAD:
        # The job table holds the error; this makes Flower show a failed task.
        raise JobFailed(f"job {job_id} ({kind}) is dead; see its last_error")
    if outcome == Outcome.SKIPPED and not recheck:
        _recheck_when_lease_ends(task, job_id, kind)


def _recheck_when_lease_ends(task: Task, job_id: int, kind: str) -> None:
    lease = (
        Job.objects.filter(pk=job_id, state=JobState.RUNNING)
        .values_list("lease_expires_at", flat=True)
        .first()
    )
    if lease is None:
        return  # done, or pending and not due: nothing waits on this message
    wait = max(0.0, (lease - timezone.now()).total_seconds()) + 1
    task.apply_async(
        args=[job_id], kwargs={"recheck": True}, countdown=wait, queue=job_type(kind).queue.value
    )
    logger.info("job %s: held by another claim; checking again in %.0fs", job_id, wait)
