"""The job tasks of the GitHub edge (polling, backfill, check runs) and Beat's poll fan-out."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from jobs.models import Job, JobKind
from jobs.queues import Queue
from jobs.registry import job_task
from polling import backfill, discovery, publishing


@job_task(JobKind.POLL_REPO, queue=Queue.POLLING)
def poll_repo(job: Job) -> dict[str, Any]:
    return discovery.poll_repository_job(job)


@job_task(JobKind.BACKFILL_REPO, queue=Queue.POLLING)
def backfill_repo(job: Job) -> dict[str, Any]:
    return backfill.backfill_repository_job(job)


# Beside the analysis that announced it, so a check run follows its verdicts at once.
@job_task(JobKind.VERDICTS_CHANGED, queue=Queue.RUNS_ANALYZE)
def verdicts_changed(job: Job) -> dict[str, Any]:
    return publishing.publish_for_verdicts_job(job)


# Beat only fans out: one poll job per repository that is due, then return.
@shared_task(name="polling.schedule_polls", ignore_result=True)
def schedule_polls_task() -> int:
    return discovery.schedule_polls()


@shared_task(name="polling.refresh_codeowners", ignore_result=True)
def refresh_codeowners_task() -> int:
    from polling.ownership import refresh_all_codeowners

    return refresh_all_codeowners()
