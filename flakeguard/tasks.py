"""Periodic housekeeping tasks of the job system."""

from __future__ import annotations

from celery import shared_task

from flakeguard.jobs import sweep_jobs
from flakeguard.queues import Queue


@shared_task(name="flakeguard.sweep_jobs", queue=Queue.POLLING.value, ignore_result=True)
def sweep_jobs_task() -> int:
    return sweep_jobs()
