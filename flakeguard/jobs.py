"""The shared job runner: enqueue, dispatch, claim, finish, retry, sweep.

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
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from flakeguard.models import Job, JobKind, JobState
from flakeguard.queues import Queue

logger = logging.getLogger(__name__)

JobService = Callable[[Job], dict[str, Any] | None]


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
    SoftTimeLimitExceeded,
)


@dataclass(frozen=True)
class TaskRoute:
    task_name: str
    queue: Queue


# Task names are strings so this module never imports the apps that run them.
TASK_FOR_KIND: dict[str, TaskRoute] = {
    JobKind.INGEST_RUN: TaskRoute("ingest.ingest_run", Queue.RUNS_INGEST),
    JobKind.ANALYZE_RUN: TaskRoute("analysis.analyze_run", Queue.RUNS_ANALYZE),
    JobKind.RECOMPUTE_REPO: TaskRoute("analysis.recompute_repo", Queue.TESTS_RECOMPUTE),
    JobKind.POLL_REPO: TaskRoute("polling.poll_repo", Queue.POLLING),
    JobKind.BACKFILL_REPO: TaskRoute("polling.backfill_repo", Queue.POLLING),
    JobKind.PUBLISH_CHECK: TaskRoute("analysis.publish_check", Queue.RUNS_ANALYZE),
}


def enqueue_job(
    *,
    kind: str,
    dedup_key: str,
    payload: dict[str, Any] | None = None,
    max_attempts: int | None = None,
) -> tuple[Job, bool]:
    """Create the job for ``dedup_key`` unless it exists; dispatch it after commit.

    Call it inside the transaction that records the job's cause. Returns the
    job and whether it was created; a duplicate cause returns the first job.
    """
    now = timezone.now()
    job = Job(
        kind=kind,
        dedup_key=dedup_key,
        payload=payload or {},
        max_attempts=max_attempts or settings.FLAKEGUARD_JOB_MAX_ATTEMPTS,
        next_attempt_at=now,
        dispatched_at=now,
    )
    created = _insert_unless_duplicate(job)
    if not created:
        job = Job.objects.get(dedup_key=dedup_key)
    if created:
        logger.info("job %s enqueued: %s", job.pk, dedup_key)
        dispatch_on_commit(job)
    return job, created


def _insert_unless_duplicate(job: Job) -> bool:
    """Insert the job unless its dedup key exists; True when inserted.

    One ``INSERT … ON CONFLICT DO NOTHING`` on PostgreSQL (a job is queued with
    every stored run, so the round trips of get_or_create showed in the import
    rate); elsewhere a savepointed insert.
    """
    if connection.vendor != "postgresql":
        try:
            with transaction.atomic():
                job.save(force_insert=True)
        except IntegrityError:
            return False
        return True
    fields = [f for f in Job._meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(job, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Job._meta.db_table} ({', '.join(f.column for f in fields)}) "
            f"VALUES ({', '.join(['%s'] * len(fields))}) "
            f"ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
            values,
        )
        row = cursor.fetchone()
    if row is None:
        return False
    job.pk = row[0]
    job._state.adding = False
    return True


def dispatch_on_commit(job: Job) -> None:
    job_id, kind = job.pk, job.kind
    transaction.on_commit(lambda: dispatch(job_id, kind))


_deferred = threading.local()


@contextmanager
def defer_eager_dispatch(kinds: Iterable[str]) -> Iterator[None]:
    """On the embedded default, run jobs of these kinds dispatched in this block at its end.

    A bulk import then stores every run before any analysis starts, so the
    analysis finds the whole backlog at once instead of trailing run by run.
    With a broker it changes nothing: workers pick jobs up as they come.
    """
    if getattr(_deferred, "jobs", None) is not None:
        yield  # already deferring
        return
    _deferred.jobs, _deferred.kinds = [], frozenset(kinds)
    try:
        yield
    finally:
        jobs, _deferred.jobs = _deferred.jobs, None
        for job_id, kind in jobs:
            dispatch(job_id, kind)


def dispatch(job_id: int, kind: str) -> None:
    """Hand the job id to its queue; on the embedded default, run it right here."""
    from flakeguard.celery import app

    route = TASK_FOR_KIND[kind]
    if settings.CELERY_TASK_ALWAYS_EAGER:
        deferred = getattr(_deferred, "jobs", None)
        if deferred is not None and kind in _deferred.kinds:
            deferred.append((job_id, kind))
            return
        app.tasks[route.task_name].apply(args=[job_id])
        return
    try:
        app.send_task(route.task_name, args=[job_id], queue=route.queue.value)
    except Exception:
        # The row is committed; the sweeper sends it again once the broker is back.
        logger.exception("job %s: dispatch to %s failed, left for the sweeper", job_id, route.queue)


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
                _mark_dead(job, "worker lost during the last attempt", now=now)
                return None
        else:
            return None
        job.state = JobState.RUNNING
        job.attempts += 1
        job.lease_expires_at = now + timedelta(seconds=settings.FLAKEGUARD_JOB_LEASE_SECONDS)
        job.started_at = now
        job.save(
            update_fields=["state", "attempts", "lease_expires_at", "started_at", "updated_at"]
        )
    return job


def run_job(job_id: int, service: JobService) -> None:
    """Claim the job, run ``service(job)`` and record the outcome."""
    job = claim_job(job_id)
    if job is None:
        logger.info("job %s: not claimable (done, running elsewhere or not due)", job_id)
        return
    try:
        result = service(job)
    except LeaseLostError:
        _log_lost_lease(job, "progress")
        return
    except ContinueLater as pause:
        _continue_later(job, pause)
        return
    except TRANSIENT_ERRORS as exc:
        _record_transient_failure(job, exc)
    except PermanentJobError as exc:
        _finish_dead(job, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        # A bug, or bad input the service did not name (integrity and data
        # errors among them): a second try would only repeat it.
        _finish_dead(job, _describe(exc))
    else:
        result = result or {}
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            # A result that cannot be stored must not leave the job RUNNING
            # until its lease runs out and the work is done again.
            _finish_dead(job, f"result could not be recorded: {_describe(exc)}")
        else:
            _finish_succeeded(job, result)


def checkpoint(job: Job, progress: dict[str, Any]) -> None:
    """Save a long job's progress and renew its lease, inside the batch's transaction.

    Raises LeaseLostError when the lease has gone to a later claim (this worker
    stalled past it), so that the batch rolls back and the new owner carries on.
    """
    now = timezone.now()
    updated = _held_by(job).update(
        progress=progress,
        lease_expires_at=now + timedelta(seconds=settings.FLAKEGUARD_JOB_LEASE_SECONDS),
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


def retry_jobs(job_ids: Iterable[int]) -> int:
    """Send DEAD jobs back to PENDING with a fresh attempt budget; returns how many."""
    now = timezone.now()
    retried = 0
    with transaction.atomic():
        for job in Job.objects.select_for_update().filter(
            pk__in=list(job_ids), state=JobState.DEAD
        ):
            job.state = JobState.PENDING
            job.attempts = 0
            job.next_attempt_at = now
            job.dispatched_at = now
            job.lease_expires_at = None
            job.finished_at = None
            job.save()
            dispatch_on_commit(job)
            logger.info("job %s: retried by operator", job.pk)
            retried += 1
    return retried


def sweep_jobs(*, now: datetime | None = None, limit: int = 500) -> int:
    """Re-dispatch jobs that are due but have no live message or worker.

    Three ways a job gets stranded: its dispatch after commit was lost (broker
    down, process killed between commit and send), its retry became due, or
    the worker holding its lease died. Returns how many jobs were dispatched.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.FLAKEGUARD_JOB_REDISPATCH_SECONDS)
    to_dispatch: list[tuple[int, str]] = []
    with transaction.atomic():
        pending = (
            Job.objects.select_for_update(skip_locked=True)
            .filter(state=JobState.PENDING, next_attempt_at__lte=now)
            .exclude(dispatched_at__gt=stale)
            .order_by("next_attempt_at")[:limit]
        )
        for job in pending:
            # A retry is undispatched by design; a dispatched job is resent
            # only when its message has had ample time to be picked up.
            to_dispatch.append((job.pk, job.kind))
        expired = (
            Job.objects.select_for_update(skip_locked=True)
            .filter(state=JobState.RUNNING, lease_expires_at__lte=now)
            .order_by("lease_expires_at")[:limit]
        )
        for job in expired:
            if (
                job.dispatched_at is not None
                and job.lease_expires_at is not None
                and job.dispatched_at > job.lease_expires_at
                and job.dispatched_at > stale
            ):
                continue  # already resent after the lease ran out; give it time
            if job.attempts >= job.max_attempts:
                _mark_dead(job, "worker lost during the last attempt", now=now)
                continue
            to_dispatch.append((job.pk, job.kind))
        if to_dispatch:
            Job.objects.filter(pk__in=[pk for pk, _ in to_dispatch]).update(dispatched_at=now)
    for job_id, kind in to_dispatch:
        logger.info("job %s: re-dispatched by the sweeper", job_id)
        dispatch(job_id, kind)
    return len(to_dispatch)


def drain_jobs(*, limit: int = 10_000) -> int:
    """Run every due job in this process; the embedded default's stand-in for workers."""
    from flakeguard.celery import app

    ran = 0
    while ran < limit:
        job = (
            Job.objects.filter(state=JobState.PENDING, next_attempt_at__lte=timezone.now())
            .order_by("pk")
            .first()
        )
        if job is None:
            return ran
        app.tasks[TASK_FOR_KIND[job.kind].task_name].apply(args=[job.pk])
        ran += 1
    return ran


def _record_transient_failure(job: Job, exc: BaseException) -> None:
    error = _describe(exc)
    if job.attempts >= job.max_attempts:
        _finish_dead(job, error)
        return
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
        return
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


def _continue_later(job: Job, pause: ContinueLater) -> None:
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
            return
        if pause.delay == 0:
            dispatch_on_commit(job)
    logger.info("job %s (%s) continues in %.0fs: %s", job.pk, job.dedup_key, pause.delay, pause)


def _finish_succeeded(job: Job, result: dict[str, Any]) -> None:
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
        return
    logger.info("job %s (%s) succeeded", job.pk, job.dedup_key)


def _finish_dead(job: Job, error: str) -> None:
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
        return
    logger.error(
        "job %s (%s) is dead after %s attempt(s): %s", job.pk, job.dedup_key, job.attempts, error
    )


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


def _mark_dead(job: Job, error: str, *, now: datetime) -> None:
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
