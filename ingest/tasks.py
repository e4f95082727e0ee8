"""The job task of the runs-ingest queue."""

from __future__ import annotations

from typing import Any

from ingest import services
from jobs.models import Job, JobKind
from jobs.queues import Queue
from jobs.registry import job_task


@job_task(JobKind.INGEST_RUN, queue=Queue.RUNS_INGEST)
def ingest_run(job: Job) -> dict[str, Any]:
    return services.ingest_run_job(job)
