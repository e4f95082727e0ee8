"""The job tasks of the runs-analyze and tests-recompute queues, and Beat's nightly fan-out."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from analysis import quarantines, retention, services, snapshots
from jobs.models import Job, JobKind
from jobs.queues import Queue
from jobs.registry import job_task


@job_task(JobKind.ANALYZE_RUN, queue=Queue.RUNS_ANALYZE)
def analyze_run(job: Job) -> dict[str, Any]:
    return services.analyze_run_job(job)


@job_task(JobKind.RECOMPUTE_REPO, queue=Queue.TESTS_RECOMPUTE)
def recompute_repo(job: Job) -> dict[str, Any]:
    return services.recompute_repository_job(job)


@job_task(JobKind.SETTLE_TALLIES, queue=Queue.TESTS_RECOMPUTE)
def settle_tallies(job: Job) -> dict[str, Any]:
    return services.settle_tallies_job(job)


# Beat only fans out: one recompute job per repository, then return.
@shared_task(name="analysis.schedule_recomputes", ignore_result=True)
def schedule_recomputes_task() -> int:
    return services.schedule_recomputes()


@shared_task(name="analysis.lift_expired_quarantines", ignore_result=True)
def lift_expired_quarantines_task() -> int:
    return quarantines.lift_expired()


@shared_task(name="analysis.take_snapshots", ignore_result=True)
def take_snapshots_task() -> int:
    return snapshots.take_snapshots()


@shared_task(name="analysis.announce_expiring_quarantines", ignore_result=True)
def announce_expiring_quarantines_task() -> int:
    return quarantines.announce_expiring()


# Daily: results past FLAKEGUARD_RETENTION_DAYS, a bounded batch per
# transaction and a bounded time per run; what is left waits for tomorrow.
@shared_task(name="analysis.enforce_retention", ignore_result=True)
def enforce_retention_task() -> dict[str, Any]:
    return retention.enforce_retention()
