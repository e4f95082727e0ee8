"""Queues as an operator sees them: depth, work in progress, dead jobs; pause and resume.

Depth is the length of the queue's Redis list (messages waiting for a
worker); in progress and dead come from the job table, by the queue each job
kind runs on. A paused queue is remembered in the cache; every worker checks
the list with its heartbeat and stops consuming a paused queue of its own, or
starts again once it is resumed (``flakeguard.worker``), including workers that
start later. Jobs keep being queued meanwhile and wait.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count

from jobs.models import Job, JobState
from jobs.queues import Queue
from jobs.registry import job_type

logger = logging.getLogger(__name__)

_PAUSED = "queues:paused"


class UnknownQueue(LookupError):
    pass


def queue(name: str) -> Queue:
    try:
        return Queue(name)
    except ValueError:
        known = ", ".join(q.value for q in Queue)
        raise UnknownQueue(f"no queue {name!r}; queues are {known}") from None


def queue_depths() -> dict[str, int | None]:
    """Messages waiting in each queue's Redis list; None when the broker cannot be asked."""
    if not settings.REDIS_URL:
        return {q.value: None for q in Queue}
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        with client.pipeline(transaction=False) as pipe:
            for q in Queue:
                pipe.llen(q.value)
            lengths = pipe.execute()
    except redis.RedisError as exc:
        logger.warning("queue depths unavailable: %s", exc)
        return {q.value: None for q in Queue}
    return {q.value: int(n) for q, n in zip(Queue, lengths, strict=True)}


def paused_queues() -> set[str]:
    return set(cache.get(_PAUSED) or ())


def queue_stats() -> list[dict[str, Any]]:
    depths = queue_depths()
    paused = paused_queues()
    by_queue: dict[str, dict[str, int]] = {q.value: {"running": 0, "dead": 0} for q in Queue}
    rows = (
        Job.objects.filter(state__in=[JobState.RUNNING, JobState.DEAD])
        .values("kind", "state")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        try:
            name = job_type(row["kind"]).queue.value
        except LookupError:
            continue
        by_queue[name][row["state"]] += row["n"]
    return [
        {
            "name": q.value,
            "depth": depths[q.value],
            "in_progress": by_queue[q.value]["running"],
            "dead": by_queue[q.value]["dead"],
            "paused": q.value in paused,
        }
        for q in Queue
    ]


def pause_queue(name: str) -> None:
    q = queue(name)
    cache.set(_PAUSED, sorted(paused_queues() | {q.value}), timeout=None)
    logger.warning("queue %s paused: workers stop consuming it", q.value)


def resume_queue(name: str) -> None:
    q = queue(name)
    cache.set(_PAUSED, sorted(paused_queues() - {q.value}), timeout=None)
    logger.warning("queue %s resumed", q.value)
