"""Celery tasks of the runs-analyze and tests-recompute queues: thin wrappers over the job runner."""

from __future__ import annotations

from celery import shared_task

from analysis import publishing, services
from flakeguard.jobs import run_job


# Queues come from CELERY task_routes in flakeguard.celery.
@shared_task(name="analysis.analyze_run", ignore_result=True)
def analyze_run_task(job_id: int) -> None:
    run_job(job_id, services.analyze_run_job)


@shared_task(name="analysis.recompute_repo", ignore_result=True)
def recompute_repo_task(job_id: int) -> None:
    run_job(job_id, services.recompute_repository_job)


@shared_task(name="analysis.publish_check", ignore_result=True)
def publish_check_task(job_id: int) -> None:
    run_job(job_id, publishing.publish_check_job)


# Beat only fans out: one recompute job per repository, then return.
@shared_task(name="analysis.schedule_recomputes", ignore_result=True)
def schedule_recomputes_task() -> int:
    return services.schedule_recomputes()
