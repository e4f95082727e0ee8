"""The state of the job system, read when Prometheus scrapes the web's ``/metrics``.

Jobs by state, dead jobs, the oldest due job, queue depths, the heartbeats of
Beat and the sweeper, and workers seen per queue come from the job table,
Redis and the shared cache at scrape time, so every web replica reports the
same truth and a restarted process loses nothing. What attempts did
(processed, durations, retries) is counted where they ran (``jobs.metrics``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from jobs import heartbeats
from jobs.queue_control import queue_depths
from jobs.queues import Queue

logger = logging.getLogger(__name__)


def _families() -> dict[str, GaugeMetricFamily]:
    g = GaugeMetricFamily
    return {
        "jobs": g("flakeguard_jobs", "Jobs in the durable job table by kind and state", labels=["kind", "state"]),
        "dead": g("flakeguard_dead_jobs", "Dead jobs waiting for an operator, by kind", labels=["kind"]),
        "oldest": g(
            "flakeguard_oldest_pending_job_age_seconds",
            "Age of the oldest due pending job by kind (queue latency)",
            labels=["kind"],
        ),
        "depth": g("flakeguard_queue_depth", "Messages waiting in each Celery queue", labels=["queue"]),
        "workers": g("flakeguard_workers", "Workers seen in the last 90 s, by queue consumed", labels=["queue"]),
        "beat": g("flakeguard_beat_heartbeat_timestamp_seconds", "When Beat last ticked (Unix time)"),
        "sweeper": g(
            "flakeguard_sweeper_last_run_timestamp_seconds", "When the job sweeper last ran (Unix time)"
        ),
    }  # fmt: skip


class JobStateCollector(Collector):
    def describe(self) -> list[GaugeMetricFamily]:
        # Lets the registry check names without querying anything at start-up.
        return list(_families().values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from jobs.models import Job, JobState

        f = _families()
        try:
            dead: dict[str, int] = {}
            for row in Job.objects.values("kind", "state").annotate(n=Count("id")).order_by():
                f["jobs"].add_metric([row["kind"], row["state"]], row["n"])
                if row["state"] == JobState.DEAD:
                    dead[row["kind"]] = row["n"]
            for kind, n in sorted(dead.items()):
                f["dead"].add_metric([kind], n)
            now = timezone.now()
            due = (
                Job.objects.filter(state=JobState.PENDING, next_attempt_at__lte=now)
                .values("kind")
                .annotate(first=Min("next_attempt_at"))
                .order_by()
            )
            for row in due:
                f["oldest"].add_metric([row["kind"]], (now - row["first"]).total_seconds())
        except Exception:  # a scrape must never fail because the database is away
            logger.warning("job metrics unavailable", exc_info=True)
            for name in ("jobs", "dead", "oldest"):
                del f[name]
        for queue, depth in queue_depths().items():
            if depth is not None:
                f["depth"].add_metric([queue], depth)
        try:
            seen = heartbeats.workers()
            for q in Queue:
                f["workers"].add_metric([q.value], sum(q.value in w["queues"] for w in seen))
            for component in ("beat", "sweeper"):
                at = heartbeats.last(component)
                if at is not None:
                    f[component].add_metric([], at)
        except Exception as exc:
            logger.warning("heartbeats unavailable: %s", exc)
        yield from f.values()


_registered: set[int] = set()


def register_job_metrics(registry: CollectorRegistry = REGISTRY) -> None:
    if id(registry) not in _registered:
        registry.register(JobStateCollector())
        _registered.add(id(registry))
