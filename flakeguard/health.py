"""Liveness and readiness endpoints for Kubernetes probes.

Liveness says the process serves requests and touches nothing else, so a
database outage never gets healthy pods killed. Readiness needs the database;
the broker is reported but not required: while Redis is away the web still
takes webhooks and uploads, whose jobs are committed and dispatched by the
sweeper once it is back, so taking every web pod out of service would turn a
broker outage into a full one. Both answer whatever ``Host`` the probe sends
(``flakeguard.probes``).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not ready", whatever its class
        logger.warning("readiness: database check failed: %s", exc)
        checks["database"] = f"error: {exc.__class__.__name__}"
    if settings.REDIS_URL:
        try:
            import redis

            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
            checks["broker"] = "ok"
        except Exception as exc:
            logger.warning("readiness: broker check failed: %s", exc)
            checks["broker"] = f"error: {exc.__class__.__name__}"
    ok = checks["database"] == "ok"
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )
