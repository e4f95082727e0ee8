"""Celery tasks of the polling queue: thin wrappers over the job runner, and Beat's fan-out."""

from __future__ import annotations

from celery import shared_task

from flakeguard.jobs import run_job
from polling import services


# Queues come from CELERY task_routes in flakeguard.celery ("polling.*").
@shared_task(name="polling.poll_repo", ignore_result=True)
def poll_repo_task(job_id: int) -> None:
    run_job(job_id, services.poll_repository_job)


@shared_task(name="polling.backfill_repo", ignore_result=True)
def backfill_repo_task(job_id: int) -> None:
    run_job(job_id, services.backfill_repository_job)


# Beat only fans out: one poll job per repository that is due, then return.
@shared_task(name="polling.schedule_polls", ignore_result=True)
def schedule_polls_task() -> int:
    return services.schedule_polls()
