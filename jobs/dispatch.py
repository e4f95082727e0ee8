"""Enqueue a job in its cause's transaction, dispatch it after commit, or run it in-process.

With a broker the job's id goes to the queue its kind was declared on; on the
embedded default (no broker) the task runs right here, and a bulk import can
defer the jobs it causes until its end.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from jobs.context import correlation_id, new_correlation_id
from jobs.models import Job, JobState
from jobs.registry import job_type

logger = logging.getLogger(__name__)


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
    job_type(kind)  # an undeclared kind fails here, inside its cause's transaction
    now = timezone.now()
    job = Job(
        kind=kind,
        dedup_key=dedup_key,
        payload=payload or {},
        max_attempts=max_attempts or settings.FLAKEGUARD_JOB_MAX_ATTEMPTS,
        next_attempt_at=now,
        dispatched_at=now,
        # A job queued by nothing correlated (Beat's fan-out) starts a trail of its own.
        correlation_id=correlation_id() or new_correlation_id(),
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
def defer_eager_dispatch(kinds: Iterable[str] = (), *, hold: Iterable[str] = ()) -> Iterator[None]:
    """On the embedded default, run jobs of ``kinds`` dispatched in this block at its end.

    A bulk import then stores every run before any analysis starts, so the
    analysis finds the whole backlog at once instead of trailing run by run.
    Jobs of ``hold`` are not run at all: they stay pending for the caller (a
    command that shows a job's progress runs it itself). With a broker it
    changes nothing: workers pick jobs up as they come.
    """
    if getattr(_deferred, "jobs", None) is not None:
        yield  # already deferring
        return
    held = frozenset(hold)
    _deferred.jobs, _deferred.kinds = [], frozenset(kinds) | held
    try:
        yield
    finally:
        jobs, _deferred.jobs = _deferred.jobs, None
        for job_id, kind in jobs:
            if kind not in held:
                dispatch(job_id, kind)


def dispatch(job_id: int, kind: str) -> None:
    """Hand the job id to its queue; on the embedded default, run it right here."""
    declared = job_type(kind)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        deferred = getattr(_deferred, "jobs", None)
        if deferred is not None and kind in _deferred.kinds:
            deferred.append((job_id, kind))
            return
        declared.task.apply(args=[job_id])
        return
    try:
        declared.task.apply_async(args=[job_id], queue=declared.queue.value)
    except Exception as exc:
        # The row is committed; the sweeper sends it again once the broker is
        # back. Marked undispatched, it is resent on the sweeper's next pass
        # instead of after the wait for a message that was never sent.
        logger.error(
            "job %s: dispatch to %s failed, left for the sweeper: %s", job_id, declared.queue, exc
        )
        try:
            Job.objects.filter(pk=job_id, state=JobState.PENDING).update(dispatched_at=None)
        except Exception as db_exc:  # the database too: the sweeper's wait will do
            logger.warning("job %s: not marked undispatched: %s", job_id, db_exc)


def drain_jobs(*, limit: int = 10_000) -> int:
    """Run every due job in this process; the embedded default's stand-in for workers."""
    ran = 0
    while ran < limit:
        job = (
            Job.objects.filter(state=JobState.PENDING, next_attempt_at__lte=timezone.now())
            .order_by("pk")
            .first()
        )
        if job is None:
            return ran
        job_type(job.kind).task.apply(args=[job.pk])
        ran += 1
    return ran
