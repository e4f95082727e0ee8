"""Celery Beat's scheduler: django-celery-beat's database schedule, with a heartbeat.

The schedule lives in the database, editable in the admin (Periodic tasks).
The entries of ``flakeguard.celery`` are written there the first time Beat
starts; after that the admin's copy rules, so an operator's change to an
interval survives the next deploy. Every tick also writes the heartbeat that
``python -m flakeguard.probe beat`` (liveness) and ``/health`` read.
"""

from __future__ import annotations

from typing import Any

from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from flakeguard import probe
from jobs import heartbeats


class HeartbeatScheduler(DatabaseScheduler):
    def setup_schedule(self) -> None:
        self.install_default_entries(self.schedule)
        wanted: dict[str, Any] = dict(self.app.conf.beat_schedule)
        existing = set(PeriodicTask.objects.filter(name__in=wanted).values_list("name", flat=True))
        self.update_from_dict({name: e for name, e in wanted.items() if name not in existing})

    def tick(self, *args: Any, **kwargs: Any) -> float:
        # Before the tick's own work: a tick blocked sending to a broker that
        # is away still counts as alive until the probe's limit runs out.
        probe.write_heartbeat("beat")
        heartbeats.record("beat")
        return super().tick(*args, **kwargs)
