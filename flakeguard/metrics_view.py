"""The web's ``/metrics``: HTTP counts of every gunicorn worker, and the state of the system.

Under gunicorn (``flakeguard.gunicorn``) each worker process counts requests in
files of ``PROMETHEUS_MULTIPROC_DIR``; this view adds them up, whichever
worker answers, and appends what is read at scrape time (jobs, queues,
heartbeats, verdicts). Workers serve their own counts on their metrics port
(``flakeguard.worker``).

Metrics name repositories and show how busy a team's CI is, so the public
port serves them only with ``Authorization: Bearer $FLAKEGUARD_METRICS_TOKEN``
(Prometheus' ``authorization`` scrape setting); on the embedded default,
which listens on localhost alone, they are open when no token is set.
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from analysis.state_metrics import register_verdict_metrics
from jobs.state_metrics import register_job_metrics

_multiprocess: CollectorRegistry | None = None


def _registry() -> CollectorRegistry:
    global _multiprocess
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY  # one process: its own registry holds everything
    if _multiprocess is None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        register_job_metrics(registry)
        register_verdict_metrics(registry)
        _multiprocess = registry
    return _multiprocess


def _authorized(request: HttpRequest) -> bool:
    token = settings.FLAKEGUARD_METRICS_TOKEN
    if not token:
        return settings.EMBEDDED
    sent = request.headers.get("Authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


def metrics(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        hint = (
            "send Authorization: Bearer <FLAKEGUARD_METRICS_TOKEN>"
            if settings.FLAKEGUARD_METRICS_TOKEN
            else "set FLAKEGUARD_METRICS_TOKEN to serve metrics here"
        )
        response = HttpResponse(
            f"metrics need a token: {hint}\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
