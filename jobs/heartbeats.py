"""Signs of life of the processes that keep jobs moving: Beat, the sweeper, workers.

Each writes a timestamp to the shared cache (Redis in a deployment) as it
works; ``/health`` and ``/metrics`` read them, so an operator sees a Beat that
stopped ticking or a queue that no worker consumes before jobs pile up. A
missing cache never stops the writer: a heartbeat is best effort, the work is
not.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache

logger = logging.getLogger(__name__)

_KEY = "heartbeat:{}"
_WORKERS = "heartbeat:workers"
# A worker that has not written for this long is no longer counted as seen.
WORKER_STALE_SECONDS = 90


def record(component: str, *, at: float | None = None) -> None:
    """Note that ``component`` ("beat", "sweeper") did its work just now."""
    try:
        cache.set(_KEY.format(component), at or time.time(), timeout=None)
    except Exception as exc:  # the broker's outage must not stop the sweep or the tick
        logger.debug("heartbeat of %s not recorded: %s", component, exc)


def last(component: str) -> float | None:
    value = cache.get(_KEY.format(component))
    return float(value) if value is not None else None


def record_worker(name: str, queues: list[str], *, at: float | None = None) -> None:
    """A worker consuming ``queues`` is alive; kept in one hash-like dict entry per worker."""
    try:
        cache.set(
            f"{_WORKERS}:{name}",
            {"name": name, "queues": queues, "at": at or time.time()},
            timeout=WORKER_STALE_SECONDS,
        )
        names = set(cache.get(_WORKERS) or ())
        if name not in names:
            cache.set(_WORKERS, sorted(names | {name}), timeout=None)
    except Exception as exc:
        logger.debug("heartbeat of worker %s not recorded: %s", name, exc)


def workers(*, now: float | None = None) -> list[dict[str, Any]]:
    """Workers seen in the last WORKER_STALE_SECONDS, with the queues they consume."""
    now = now or time.time()
    names = cache.get(_WORKERS) or []
    found = cache.get_many([f"{_WORKERS}:{n}" for n in names])
    seen = [w for w in found.values() if now - float(w["at"]) <= WORKER_STALE_SECONDS]
    if len(seen) < len(names):
        # Forget the workers that are gone, so the list does not grow with every pod.
        cache.set(_WORKERS, sorted(w["name"] for w in seen), timeout=None)
    return sorted(seen, key=lambda w: w["name"])
