"""Lets the health probes and Prometheus through whatever ``Host`` they send.

The kubelet and Prometheus address a pod by its IP, which no ``ALLOWED_HOSTS``
lists, and Django would answer 400 (``DisallowedHost``), so a web pod would
never become ready. For the probe paths alone, and only for GET and HEAD, the
host is replaced by the first allowed one before anything reads it; every
other path keeps Django's host check.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

# Prometheus addresses the pod by IP too; /metrics still needs its token.
PROBE_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})


class ProbeHostMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in PROBE_PATHS and request.method in ("GET", "HEAD"):
            allowed = [
                h for h in settings.ALLOWED_HOSTS if h and h != "*" and not h.startswith(".")
            ]
            if allowed:
                request.META["HTTP_HOST"] = allowed[0]
                request.META.pop("HTTP_X_FORWARDED_HOST", None)
        return self.get_response(request)
