"""The shared job runner: claim, run, checkpoint, finish, retry with backoff.

Every task hands its job id and one service function to ``run_job``, which
owns the state machine, so no task re-implements leases or retry policy:

    PENDING --claim--> RUNNING --ok--> SUCCEEDED
                          |--transient error, attempts left--> PENDING (backoff)
                          |--transient error, last attempt-----> DEAD
                          '--permanent or unexpected error-----> DEAD

Retries are chosen by error class: bad input never succeeds on a second try,
a broken network or a busy database may. DEAD jobs wait for an operator.
"""

from __future__ import annotations

import json
import logging
import random
import time
import traceback
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from jobs import metrics
from jobs.context import bound
from jobs.dispatch import dispatch_on_commit
from jobs.errors import TRANSIENT_ERRORS, ContinueLater, LeaseLostError, PermanentJobError
from jobs.leases import LeaseKeeper, lease_seconds
from jobs.models import Job, JobState
from jobs.registry import JobService

logger = logging.getLogger(__name__)


def claim_job(job_id: int, *, now: datetime | None = None) -> Job | None:
    """Take the job for this worker, or return None when it is not ours to run.

    SKIP LOCKED makes a concurrent claimer move on instead of queueing behind
    us; the state check turns duplicate deliveries into no-ops.
    """
    now = now or timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update(skip_locked=True).filter(pk=job_id).first()
        if job is None:
            return None
        if job.state == JobState.PENDING and job.next_attempt_at <= now:
            pass
        elif (
            job.state == JobState.RUNNING
            and job.lease_expires_at is not None
            and job.lease_expires_at <= now
        ):
            logger.warning("job %s: lease expired, the previous worker is gone", job.pk)
            if job.attempts >= job.max_attempts:
                mark_dead(job, "worker lost during the last attempt", now=now)
                return None
        else:
            return None
        job.state = JobState.RUNNING
        job.attempts += 1
        job.lease_expires_at = now + timedelta(seconds=lease_seconds())
        job.started_at = now
        job.save(
            update_fields=["state", "attempts", "lease_expires_at", "started_at", "updated_at"]
        )
    return job


class Outcome(StrEnum):
    """What became of one delivery of a job's message (``flakeguard_jobs_processed_total``)."""

    SUCCEEDED = "succeeded"
    RETRIED = "retried"
    DEAD = "dead"
    PAUSED = "paused"
    SKIPPED = "skipped"
    LEASE_LOST = "lease_lost"


def run_job(job_id: int, service: JobService, *, kind: str = "") -> Outcome:
    """Claim the job, run ``service(job)`` and record the outcome.

    Every log line written meanwhile carries the job's id, kind and the
    correlation id of whatever caused it; jobs the service queues inherit it.
    """
    with bound(job_id=job_id):
        job = claim_job(job_id)
        if job is None:
            logger.info("job %s: not claimable (done, running elsewhere or not due)", job_id)
            metrics.JOBS_PROCESSED.labels(kind=kind or "unknown", outcome=Outcome.SKIPPED).inc()
            return Outcome.SKIPPED
        with bound(job_kind=job.kind, correlation_id=job.correlation_id):
            in_progress = metrics.JOBS_IN_PROGRESS.labels(kind=job.kind)
            in_progress.inc()
            started = time.monotonic()
            try:
                outcome = _attempt(job, service)
            finally:
                in_progress.dec()
                metrics.JOB_DURATION.labels(kind=job.kind).observe(time.monotonic() - started)
            metrics.JOBS_PROCESSED.labels(kind=job.kind, outcome=outcome).inc()
            return outcome


def _attempt(job: Job, service: JobService) -> Outcome:
    try:
        with LeaseKeeper(job):
            result = service(job)
    except LeaseLostError:
        _log_lost_lease(job, "progress")
        return Outcome.LEASE_LOST
    except ContinueLater as pause:
        return _continue_later(job, pause)
    except TRANSIENT_ERRORS as exc:
        return _record_transient_failure(job, exc)
    except PermanentJobError as exc:
        return _finish_dead(job, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        # A bug, or bad input the service did not name (integrity and data
        # errors among them): a second try would only repeat it.
        return _finish_dead(job, _describe(exc))
    result = result or {}
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        # A result that cannot be stored must not leave the job RUNNING
        # until its lease runs out and the work is done again.
        return _finish_dead(job, f"result could not be recorded: {_describe(exc)}")
    return _finish_succeeded(job, result)


def checkpoint(job: Job, progress: dict[str, Any]) -> None:
    """Save a long job's progress and renew its lease, inside the batch's transaction.

    Raises LeaseLostError when the lease has gone to a later claim (this worker
    stalled past it), so that the batch rolls back and the new owner carries on.
    """
    now = timezone.now()
    updated = _held_by(job).update(
        progress=progress,
        lease_expires_at=now + timedelta(seconds=lease_seconds()),
        updated_at=now,
    )
    if not updated:
        raise LeaseLostError(f"job {job.pk}: lease lost to a later claim")
    job.progress = progress


def backoff_seconds(attempts: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: base * 2^(attempts-1), capped, times 0.5 to 1.0.

    The jitter spreads retries of jobs that failed together (an outage) so they
    do not come back as one thundering herd.
    """
    rng = rng or random
    base = settings.FLAKEGUARD_JOB_BACKOFF_BASE_SECONDS
    ceiling = settings.FLAKEGUARD_JOB_BACKOFF_MAX_SECONDS
    delay = min(ceiling, base * 2 ** max(0, attempts - 1))
    return delay * rng.uniform(0.5, 1.0)


def _record_transient_failure(job: Job, exc: BaseException) -> Outcome:
    error = _describe(exc)
    if job.attempts >= job.max_attempts:
        return _finish_dead(job, error)
    delay = backoff_seconds(job.attempts)
    now = timezone.now()
    updated = _held_by(job).update(
        state=JobState.PENDING,
        next_attempt_at=now + timedelta(seconds=delay),
        dispatched_at=None,
        lease_expires_at=None,
        last_error=error,
        updated_at=now,
    )
    if not updated:
        _log_lost_lease(job, "retry")
        return Outcome.LEASE_LOST
    metrics.JOB_RETRIES.labels(kind=job.kind, error=type(exc).__name__).inc()
    logger.warning(
        "job %s (%s): attempt %s/%s failed, retry in %.0fs: %s",
        job.pk,
        job.dedup_key,
        job.attempts,
        job.max_attempts,
        delay,
        # The stored error is a traceback, whose first line says nothing.
        f"{type(exc).__name__}: {exc}",
    )
    return Outcome.RETRIED


def _continue_later(job: Job, pause: ContinueLater) -> Outcome:
    now = timezone.now()
    with transaction.atomic():
        updated = _held_by(job).update(
            state=JobState.PENDING,
            attempts=max(0, job.attempts - 1),
            next_attempt_at=now + timedelta(seconds=pause.delay),
            dispatched_at=now if pause.delay == 0 else None,
            lease_expires_at=None,
            last_error="",
            updated_at=now,
        )
        if not updated:
            _log_lost_lease(job, "pause")
            return Outcome.LEASE_LOST
        if pause.delay == 0:
            dispatch_on_commit(job)
    logger.info("job %s (%s) continues in %.0fs: %s", job.pk, job.dedup_key, pause.delay, pause)
    return Outcome.PAUSED


def _finish_succeeded(job: Job, result: dict[str, Any]) -> Outcome:
    now = timezone.now()
    updated = _held_by(job).update(
        state=JobState.SUCCEEDED,
        result=result,
        lease_expires_at=None,
        last_error="",
        finished_at=now,
        updated_at=now,
    )
    if not updated:
        _log_lost_lease(job, "success")
        return Outcome.LEASE_LOST
    logger.info("job %s (%s) succeeded", job.pk, job.dedup_key)
    return Outcome.SUCCEEDED


def _finish_dead(job: Job, error: str) -> Outcome:
    now = timezone.now()
    updated = _held_by(job).update(
        state=JobState.DEAD,
        lease_expires_at=None,
        last_error=error,
        finished_at=now,
        updated_at=now,
    )
    if not updated:
        _log_lost_lease(job, "failure")
        return Outcome.LEASE_LOST
    logger.error(
        "job %s (%s) is dead after %s attempt(s): %s", job.pk, job.dedup_key, job.attempts, error
    )
    return Outcome.DEAD


def _held_by(job: Job) -> QuerySet[Job]:
    """The job's row, only while it is still in the claim this worker made.

    A worker that stalls past its lease (paused VM, network partition, a lease
    shorter than the task) has had the job re-dispatched and claimed again,
    which bumped ``attempts`` and moved ``started_at``. Its late outcome must
    not overwrite the state of the attempt that now owns the job.
    """
    return Job.objects.filter(
        pk=job.pk, state=JobState.RUNNING, attempts=job.attempts, started_at=job.started_at
    )


def _log_lost_lease(job: Job, outcome: str) -> None:
    logger.warning(
        "job %s (%s): attempt %s lost its lease to a later claim; its %s is not recorded",
        job.pk,
        job.dedup_key,
        job.attempts,
        outcome,
    )


def mark_dead(job: Job, error: str, *, now: datetime) -> None:
    job.state = JobState.DEAD
    job.lease_expires_at = None
    job.last_error = error
    job.finished_at = now
    job.save(update_fields=["state", "lease_expires_at", "last_error", "finished_at", "updated_at"])
    logger.error("job %s (%s) is dead: %s", job.pk, job.dedup_key, error)


def _describe(exc: BaseException) -> str:
    # Keep the traceback for the operator, bounded so a huge message cannot bloat the row.
    text = "".join(traceback.format_exception(exc))
    return text[-8000:]
