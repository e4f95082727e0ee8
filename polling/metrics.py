"""GitHub as Prometheus sees it from each process that calls it.

Endpoints are labelled by their route (``/repos/{repo}/actions/runs/{id}``), not
their URL, so a metric has a handful of series rather than one per run.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge, Histogram

GITHUB_REQUESTS = Counter(
    "flakeguard_github_requests",
    "Requests to GitHub by endpoint and status (2xx, 304, the error status, or unreachable)",
    ["endpoint", "status"],
)
GITHUB_DURATION = Histogram(
    "flakeguard_github_request_duration_seconds",
    "Time a GitHub request took, by endpoint",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
GITHUB_RATE_LIMIT = Gauge(
    "flakeguard_github_rate_limit_remaining",
    "Requests left in the rate-limit window, as GitHub last said, by credentials",
    ["installation"],
    multiprocess_mode="mostrecent",
)

_ROUTES = (
    (re.compile(r"^/repos/[^/]+/[^/]+"), "/repos/{repo}"),
    (re.compile(r"/contents/.*$"), "/contents/{path}"),
    (re.compile(r"/\d+(?=/|$)"), "/{id}"),
)


def endpoint(url: str) -> str:
    """The route of a GitHub API URL: ``/repos/{repo}/actions/runs/{id}/artifacts``."""
    path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    # A GitHub Enterprise base URL ends in /api/v3; the route starts after it.
    path = re.sub(r"^.*?/api/v3(?=/)", "", path)
    for pattern, replacement in _ROUTES:
        path = pattern.sub(replacement, path)
    return path or "/"
