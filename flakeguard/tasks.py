"""Periodic housekeeping tasks of the job system."""

from __future__ import annotations

from celery import shared_task

from flakeguard.jobs import sweep_jobs


# Routed to the polling queue by task_routes.
@shared_task(name="flakeguard.sweep_jobs", ignore_result=True)
def sweep_jobs_task() -> int:
    return sweep_jobs()
