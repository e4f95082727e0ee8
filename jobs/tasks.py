"""The job core's own periodic task: Beat's sweeper of stranded jobs."""

from __future__ import annotations

from celery import shared_task

from jobs import heartbeats
from jobs.sweeper import sweep_jobs


# The task keeps its name across the move to the job core: Beat schedules it by name.
# Beat sends it to the scheduler queue (flakeguard.celery).
@shared_task(name="flakeguard.sweep_jobs", ignore_result=True)
def sweep_jobs_task() -> int:
    dispatched = sweep_jobs()
    heartbeats.record("sweeper")
    return dispatched
