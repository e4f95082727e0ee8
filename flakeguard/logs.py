"""One log format for web, workers, Beat and commands, each line with its correlation id.

Every logger in the process (Django's, Celery's, FlakeGuard's) writes through
the stdlib ``logging`` module; structlog's ``ProcessorFormatter`` renders those
records as one JSON object per line (``LOG_FORMAT=json``, the default of a
deployment) or as readable text (``console``, the embedded default's). Context
bound with ``jobs.context.bind`` — the correlation id above all — is added to every line
written while it is bound, from the webhook delivery or upload request that
caused the work, through every job it queues (``Job.correlation_id``), to the
check run at the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import structlog
from django.http import HttpRequest, HttpResponse

from flakeguard.probes import PROBE_PATHS
from jobs.context import bind, clear, new_correlation_id, safe_id

request_log = logging.getLogger("flakeguard.request")


def formatter(fmt: str) -> dict[str, Any]:
    """The ``LOGGING`` formatter entry for ``json`` or ``console`` output."""
    pre_chain = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
        "foreign_pre_chain": pre_chain,
    }


class CorrelationIdMiddleware:
    """Binds a correlation id for the request and returns it as ``X-Request-ID``.

    A GitHub webhook is known by its delivery id (what GitHub's "Recent
    Deliveries" page shows, so an operator can go from a redelivery to its log
    lines); otherwise a caller's own ``X-Request-ID`` is kept when it is safe,
    and a new id is made when there is none.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        cid = (
            safe_id(request.headers.get("X-GitHub-Delivery"))
            or safe_id(request.headers.get("X-Request-ID"))
            or new_correlation_id()
        )
        clear()
        bind(correlation_id=cid)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            if request.path not in PROBE_PATHS:  # probes and scrapes would drown the rest
                # The access log, in the same format and with the same id.
                request_log.info(
                    "%s %s %s",
                    request.method,
                    request.path,
                    response.status_code,
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
        finally:
            clear()
        response["X-Request-ID"] = cid
        return response
