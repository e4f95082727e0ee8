"""Health of the web and of the system behind it, for probes and for people.

- ``/health/live``: the process serves requests. It touches nothing else, so a
  database outage never gets healthy pods killed.
- ``/health/ready``: the database answers and every migration is applied. The
  broker is reported but not required: while Redis is away the web still takes
  webhooks and uploads, whose jobs are committed and dispatched by the sweeper
  once it is back, so taking every web pod out of service would turn a broker
  outage into a full one.
- ``/health``: every component with its response time — database, migrations,
  broker, Celery queue depths, the oldest due job, the last sweeper run and
  Beat tick, and the workers seen — as JSON for an operator or a status page.
  It answers 200 when the web is ready and says ``degraded`` when something
  behind it is not right.

All answer whatever ``Host`` the probe sends (``flakeguard.probes``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from jobs import heartbeats
from jobs.models import Job, JobState
from jobs.queue_control import queue_depths
from jobs.queues import Queue

logger = logging.getLogger(__name__)

# Beat ticks every few seconds and the sweeper runs every 30: past these the
# schedule has stopped, and retries and re-dispatches with it.
BEAT_STALE_SECONDS = 120
SWEEPER_STALE_SECONDS = 180

_migrated = False  # once every migration is applied it stays so for this process


def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    checks = {"database": _timed(_database), "migrations": _timed(_migrations)}
    if settings.REDIS_URL:
        checks["broker"] = _timed(_broker)
    ok = checks["database"]["status"] == "ok" and checks["migrations"]["status"] == "ok"
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


def overview(request: HttpRequest) -> JsonResponse:
    components: dict[str, dict[str, Any]] = {
        "database": _timed(_database),
        "migrations": _timed(_migrations),
        "broker": _timed(_broker) if settings.REDIS_URL else _skipped("no broker: jobs run in-process"),
        "queues": _timed(_queues),
        "oldest_pending_job": _timed(_oldest_pending),
        "sweeper": _timed(lambda: _heartbeat("sweeper", SWEEPER_STALE_SECONDS)),
        "beat": _timed(lambda: _heartbeat("beat", BEAT_STALE_SECONDS)),
        "workers": _timed(_workers),
    }  # fmt: skip
    if not settings.REDIS_URL:
        # The embedded default has no Beat, sweeper or workers to watch.
        for name in ("queues", "sweeper", "beat", "workers"):
            components[name] = _skipped("no broker: jobs run in-process")
    ready_ = all(components[c]["status"] == "ok" for c in ("database", "migrations"))
    healthy = all(c["status"] in ("ok", "skipped") for c in components.values())
    status = "ok" if healthy else ("degraded" if ready_ else "unavailable")
    return JsonResponse({"status": status, "components": components}, status=200 if ready_ else 503)


def _timed(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:  # any failure is the component's, never the endpoint's
        logger.warning("health: %s failed: %s", getattr(check, "__name__", "check"), exc)
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "detail": reason}


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"status": "ok", "vendor": connection.vendor}


def _migrations() -> dict[str, Any]:
    global _migrated
    if not _migrated:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            names = [f"{m.app_label}.{m.name}" for m, _ in plan[:5]]
            return {"status": "error", "unapplied": len(plan), "first": names}
        _migrated = True
    return {"status": "ok"}


def _broker() -> dict[str, Any]:
    import redis

    redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
    return {"status": "ok"}


def _queues() -> dict[str, Any]:
    depths = queue_depths()
    if any(depth is None for depth in depths.values()):
        return {"status": "error", "error": "broker unreachable", "depth": depths}
    return {"status": "ok", "depth": depths}


def _oldest_pending() -> dict[str, Any]:
    now = timezone.now()
    job = (
        Job.objects.filter(state=JobState.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values("pk", "kind", "next_attempt_at")
        .first()
    )
    dead = Job.objects.filter(state=JobState.DEAD).count()
    if job is None:
        return {"status": "ok", "age_seconds": 0, "dead_jobs": dead}
    age = (now - job["next_attempt_at"]).total_seconds()
    # A due job waits for the sweeper's re-dispatch at worst; beyond that, nothing takes it.
    limit = settings.FLAKEGUARD_JOB_REDISPATCH_SECONDS + SWEEPER_STALE_SECONDS
    return {
        "status": "ok" if age <= limit else "error",
        "age_seconds": round(age, 1),
        "job": job["pk"],
        "kind": job["kind"],
        "dead_jobs": dead,
    }


def _heartbeat(component: str, stale_after: int) -> dict[str, Any]:
    at = heartbeats.last(component)
    if at is None:
        return {"status": "error", "error": f"no {component} heartbeat yet"}
    age = time.time() - at
    return {
        "status": "ok" if age <= stale_after else "error",
        "last_seen_seconds_ago": round(age, 1),
    }


def _workers() -> dict[str, Any]:
    seen = heartbeats.workers()
    consumed = {queue for worker in seen for queue in worker["queues"]}
    missing = sorted(q.value for q in Queue if q.value not in consumed)
    return {
        "status": "ok" if not missing else "error",
        "seen": [{"name": w["name"], "queues": w["queues"]} for w in seen],
        "queues_without_workers": missing,
    }
