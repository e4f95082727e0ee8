"""The one Celery app: the closed set of queues and the Beat schedule.

Configuration comes from Django settings under the ``CELERY_`` prefix (see
``flakeguard.settings``, where every non-default value is explained).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab
from kombu import Queue as KombuQueue

from jobs.queues import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flakeguard.settings")

app = Celery("flakeguard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [KombuQueue(q.value, routing_key=q.value) for q in Queue]
# A job task goes to the queue its kind was declared on (``jobs.registry.job_task``);
# each Beat entry names its queue below.
app.conf.task_routes = ("jobs.registry.route_task",)  # by name: loaded once Django is
app.conf.beat_schedule = {
    # Re-dispatch jobs whose message was lost after commit, whose retry is due,
    # or whose worker died holding the lease. Every 30 s keeps retries prompt
    # while costing one indexed query.
    "sweep-jobs": {
        "task": "flakeguard.sweep_jobs",
        "schedule": 30.0,
        "options": {"queue": Queue.POLLING.value},
    },
    # Poll the repositories whose interval has passed (each has its own
    # interval; this only looks for due ones, one indexed query).
    "schedule-polls": {
        "task": "polling.schedule_polls",
        "schedule": 30.0,
        "options": {"queue": Queue.POLLING.value},
    },
    # Lift the quarantines whose expiry has passed (CI's list already leaves
    # them out; this makes the dashboard, reports and check runs agree).
    "lift-expired-quarantines": {
        "task": "analysis.lift_expired_quarantines",
        "schedule": 60.0,
        "options": {"queue": Queue.TESTS_RECOMPUTE.value},
    },
    # Tell owners a few days before a quarantine lapses (once per quarantine).
    "announce-expiring-quarantines": {
        "task": "analysis.announce_expiring_quarantines",
        "schedule": crontab(minute=37),
        "options": {"queue": Queue.TESTS_RECOMPUTE.value},
    },
    # Test owners: each followed repository's CODEOWNERS, read again daily
    # (a conditional request, free when unchanged).
    "refresh-codeowners": {
        "task": "polling.refresh_codeowners",
        "schedule": crontab(hour=2, minute=47),
        "options": {"queue": Queue.POLLING.value},
    },
    # The dashboard's trends: today's numbers per repository, restated hourly.
    "take-snapshots": {
        "task": "analysis.take_snapshots",
        "schedule": crontab(minute=7),
        "options": {"queue": Queue.TESTS_RECOMPUTE.value},
    },
    # Rescore every repository from its whole history once a night (03:17 UTC,
    # off the hour when CI is quiet), so scores that runs-analyze advanced
    # incrementally are brought back to exactly what the history says.
    "nightly-recompute": {
        "task": "analysis.schedule_recomputes",
        "schedule": crontab(hour=3, minute=17),
        "options": {"queue": Queue.TESTS_RECOMPUTE.value},
    },
}
app.autodiscover_tasks()
