"""Prometheus metrics of the job system, served at /metrics beside django-prometheus's.

Job counts are read from the job table when Prometheus scrapes, so every web
replica reports the same truth and no worker has to push anything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    jobs = GaugeMetricFamily(
        "flakeguard_jobs",
        "Jobs in the durable job table by kind and state",
        labels=["kind", "state"],
    )
    oldest = GaugeMetricFamily(
        "flakeguard_oldest_pending_job_age_seconds",
        "Age of the oldest due pending job by kind (queue latency)",
        labels=["kind"],
    )
    return jobs, oldest


class JobTableCollector(Collector):
    def describe(self) -> list[GaugeMetricFamily]:
        # Lets the registry check names without querying the database at start-up.
        return list(_families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from jobs.models import Job, JobState

        jobs, oldest = _families()
        try:
            for row in Job.objects.values("kind", "state").annotate(n=Count("id")).order_by():
                jobs.add_metric([row["kind"], row["state"]], row["n"])
            now = timezone.now()
            due = (
                Job.objects.filter(state=JobState.PENDING, next_attempt_at__lte=now)
                .values("kind")
                .annotate(first=Min("next_attempt_at"))
                .order_by()
            )
            for row in due:
                oldest.add_metric([row["kind"]], (now - row["first"]).total_seconds())
        except Exception:  # a scrape must never fail because the database is away
            logger.warning("job metrics unavailable", exc_info=True)
            return
        yield jobs
        yield oldest


_registered = False


def register_job_metrics() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(JobTableCollector())
        _registered = True
