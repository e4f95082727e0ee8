"""The metric names FlakeGuard exports, and which of them a PromQL expression reads.

Alert rules and dashboard panels are checked against this list, so a renamed
or misspelt metric fails a test instead of leaving a panel empty or an alert
silent forever.
"""

from __future__ import annotations

import re

# name as exported -> type (histograms are read through their samples' suffixes)
FLAKEGUARD_METRICS = {
    "flakeguard_jobs_processed_total": "counter",
    "flakeguard_job_duration_seconds": "histogram",
    "flakeguard_job_retries_total": "counter",
    "flakeguard_jobs_in_progress": "gauge",
    "flakeguard_dead_jobs": "gauge",
    "flakeguard_jobs": "gauge",
    "flakeguard_oldest_pending_job_age_seconds": "gauge",
    "flakeguard_queue_depth": "gauge",
    "flakeguard_github_requests_total": "counter",
    "flakeguard_github_request_duration_seconds": "histogram",
    "flakeguard_github_rate_limit_remaining": "gauge",
    "flakeguard_tests_analyzed_total": "counter",
    "flakeguard_flaky_tests": "gauge",
    "flakeguard_test_score": "gaugehistogram",
    "flakeguard_incidents_total": "counter",
    "flakeguard_beat_heartbeat_timestamp_seconds": "gauge",
    "flakeguard_sweeper_last_run_timestamp_seconds": "gauge",
    "flakeguard_workers": "gauge",
}
_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}
FLAKEGUARD_SAMPLES = frozenset(
    name + suffix
    for name, kind in FLAKEGUARD_METRICS.items()
    for suffix in _SUFFIXES.get(kind, ("",))
)

_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right"}
)
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")


def metric_names(expr: str) -> set[str]:
    """The series names ``expr`` selects (functions, keywords and label names left out)."""
    for pattern in (_STRING, _MATCHERS, _RANGE, _GROUPING, _VARIABLE):
        expr = pattern.sub(" ", expr)
    names = set()
    for match in _IDENTIFIER.finditer(expr):
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


def unknown_metrics(expr: str, *, also: frozenset[str] = frozenset()) -> set[str]:
    """Names in ``expr`` that are neither FlakeGuard's, django-prometheus's, nor in ``also``."""
    return {
        name
        for name in metric_names(expr)
        if name not in FLAKEGUARD_SAMPLES and not name.startswith("django_") and name not in also
    }
