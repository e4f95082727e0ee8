"""One delivery of a job's message to a worker, and what it leaves behind when it cannot run.

A message must never be consumed without its job going somewhere:

- the job's claim is held by another worker (a redelivery after that worker
  died, or a duplicate): a recheck is sent for the moment its lease runs out,
  so a dead worker's job runs again within a lease, not after the sweeper's
  much longer wait. A live holder renews its lease and the recheck finds it
  still running and stops (one recheck per delivery, never a chain);
- the job is due but its row was locked at the claim (the sweeper's scan): it
  is tried again a second later, and then left marked for the sweeper;
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
    if outcome == Outcome.SKIPPED:
        _leave_nothing_behind(task, job_id, kind, recheck=recheck)


def _leave_nothing_behind(task: Task, job_id: int, kind: str, *, recheck: bool) -> None:
    """A delivery that could not claim its job: make sure a later one will."""
    row = (
        Job.objects.filter(pk=job_id)
        .values_list("state", "lease_expires_at", "next_attempt_at")
        .first()
    )
    if row is None:
        return
    state, lease, due = row
    now = timezone.now()
    if state == JobState.RUNNING and lease is not None and not recheck:
        # Held by another claim: look again when its lease runs out.
        _send_again(task, job_id, kind, max(0.0, (lease - now).total_seconds()) + 1)
        logger.info("job %s: held by another claim; checking again when its lease ends", job_id)
    elif state == JobState.PENDING and due <= now:
        # Due but locked at the claim (the sweeper's scan holds due rows for an
        # instant): try again in a second, then leave it to the sweeper's next pass.
        if not recheck:
            _send_again(task, job_id, kind, 1.0)
        else:
            Job.objects.filter(pk=job_id, state=JobState.PENDING).update(dispatched_at=None)


def _send_again(task: Task, job_id: int, kind: str, countdown: float) -> None:
    task.apply_async(
        args=[job_id],
        kwargs={"recheck": True},
        countdown=countdown,
        queue=job_type(kind).queue.value,
    )
