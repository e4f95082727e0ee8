"""The one Celery app: the closed set of queues and the Beat schedule.

Configuration comes from Django settings under the ``CELERY_`` prefix (see
``flakeguard.settings``, where every non-default value is explained).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab
from celery.signals import setup_logging
from kombu import Queue as KombuQueue

from flakeguard.worker import WorkerHeartbeat, prepare_worker_metrics
from jobs.queues import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flakeguard.settings")
# Before anything imports prometheus_client: pool children count in files the
# worker's exporter adds up (see flakeguard.worker).
prepare_worker_metrics()

app = Celery("flakeguard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [KombuQueue(q.value, routing_key=q.value) for q in Queue]
# A job task goes to the queue its kind was declared on (``jobs.registry.job_task``);
# each Beat entry names its queue below.
app.conf.task_routes = ("jobs.registry.route_task",)  # by name: loaded once Django is
HOUR = 3600


def _options(queue: Queue, *, expires: int) -> dict[str, object]:
    """Where a periodic message goes and how long it stays worth running.

    A message that waited past its next tick (a stopped worker, a paused
    queue) is dropped instead of running late next to its successors: the
    schedule sends a fresh one anyway. ``expire_seconds`` is how the database
    scheduler (django-celery-beat) stores it; ``expires`` is Celery's own.
    """
    return {"queue": queue.value, "expires": expires, "expire_seconds": expires}


app.conf.beat_schedule = {
    # Re-dispatch jobs whose message was lost after commit, whose retry is due,
    # or whose worker died holding the lease. Every 15 s keeps retries prompt
    # and a dead worker's job waiting under a minute, for one indexed query.
    "sweep-jobs": {
        "task": "flakeguard.sweep_jobs",
        "schedule": 15.0,
        "options": _options(Queue.SCHEDULER, expires=12),
    },
    # Poll the repositories whose interval has passed (each has its own
    # interval; this only looks for due ones, one indexed query).
    "schedule-polls": {
        "task": "polling.schedule_polls",
        "schedule": 30.0,
        "options": _options(Queue.SCHEDULER, expires=25),
    },
    # Lift the quarantines whose expiry has passed (CI's list already leaves
    # them out; this makes the dashboard, reports and check runs agree).
    "lift-expired-quarantines": {
        "task": "analysis.lift_expired_quarantines",
        "schedule": 60.0,
        "options": _options(Queue.TESTS_RECOMPUTE, expires=55),
    },
    # Tell owners a few days before a quarantine lapses (once per quarantine).
    "announce-expiring-quarantines": {
        "task": "analysis.announce_expiring_quarantines",
        "schedule": crontab(minute=37),
        "options": _options(Queue.TESTS_RECOMPUTE, expires=HOUR),
    },
    # Test owners: each followed repository's CODEOWNERS, read again daily
    # (a conditional request, free when unchanged).
    "refresh-codeowners": {
        "task": "polling.refresh_codeowners",
        "schedule": crontab(hour=2, minute=47),
        "options": _options(Queue.POLLING, expires=6 * HOUR),
    },
    # The dashboard's trends: today's numbers per repository, restated hourly.
    "take-snapshots": {
        "task": "analysis.take_snapshots",
        "schedule": crontab(minute=7),
        "options": _options(Queue.TESTS_RECOMPUTE, expires=HOUR),
    },
    # Results past FLAKEGUARD_RETENTION_DAYS, removed in batches once a day.
    "enforce-retention": {
        "task": "analysis.enforce_retention",
        "schedule": crontab(hour=4, minute=23),
        "options": _options(Queue.TESTS_RECOMPUTE, expires=6 * HOUR),
    },
    # Rescore every repository from its whole history once a night (03:17 UTC,
    # off the hour when CI is quiet), so scores that runs-analyze advanced
    # incrementally are brought back to exactly what the history says.
    "nightly-recompute": {
        "task": "analysis.schedule_recomputes",
        "schedule": crontab(hour=3, minute=17),
        "options": _options(Queue.SCHEDULER, expires=6 * HOUR),
    },
}
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(**kwargs: object) -> None:
    """Workers and Beat keep Django's LOGGING (one JSON format with correlation ids)."""


# Heartbeat, probe file, queue pauses and the metrics port of every worker.
app.steps["consumer"].add(WorkerHeartbeat)
