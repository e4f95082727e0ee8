"""Jobs that lost their way: re-dispatched by the Beat sweeper, or sent back by an operator.

Three ways a job gets stranded: its dispatch after commit was lost (broker
down, process killed between commit and send), its retry became due, or the
worker holding its lease died. Dead jobs wait for an operator's retry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from jobs.dispatch import dispatch, dispatch_on_commit
from jobs.models import Job, JobState
from jobs.runner import mark_dead

logger = logging.getLogger(__name__)


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
    # A broker that restarted lost the messages it held: every due job is sent
    # again now rather than after the wait for a message that no longer exists.
    lost_messages = broker_restarted()
    to_dispatch: list[tuple[int, str]] = []
    with transaction.atomic():
        pending = Job.objects.select_for_update(skip_locked=True).filter(
            state=JobState.PENDING, next_attempt_at__lte=now
        )
        if not lost_messages:
            pending = pending.exclude(dispatched_at__gt=stale)
        pending = pending.order_by("next_attempt_at")[:limit]
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
                not lost_messages
                and job.dispatched_at is not None
                and job.lease_expires_at is not None
                and job.dispatched_at > job.lease_expires_at
                and job.dispatched_at > stale
            ):
                continue  # already resent after the lease ran out; give it time
            if job.attempts >= job.max_attempts:
                mark_dead(job, "worker lost during the last attempt", now=now)
                continue
            to_dispatch.append((job.pk, job.kind))
        if to_dispatch:
            Job.objects.filter(pk__in=[pk for pk, _ in to_dispatch]).update(dispatched_at=now)
    if lost_messages and to_dispatch:
        logger.warning("broker restarted: %s due job(s) sent again", len(to_dispatch))
    for job_id, kind in to_dispatch:
        logger.info("job %s: re-dispatched by the sweeper", job_id)
        dispatch(job_id, kind)
    return len(to_dispatch)


_BROKER_RUN_ID = "sweeper:broker-run-id"


def broker_restarted() -> bool:
    """Whether the broker is another server process than at the last sweep.

    Redis names each start with a fresh ``run_id``; the sweeper keeps the last
    one it saw in the shared cache, which lives in the same Redis in a
    deployment, so a restart that lost the queues lost the note too. Either
    way the sweep that follows sends every due job again. On the embedded
    default (no broker) there is nothing to lose.
    """
    if not settings.REDIS_URL:
        return False
    import redis

    try:
        run_id = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).info("server")["run_id"]
        seen = cache.get(_BROKER_RUN_ID)
        if seen != run_id:
            cache.set(_BROKER_RUN_ID, run_id, timeout=None)
    except Exception as exc:  # the broker is away: this sweep's dispatches fail anyway
        logger.warning("broker state unknown: %s", exc)
        return False
    return seen != run_id
