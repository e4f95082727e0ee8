"""Celery tasks of the runs-ingest queue: thin wrappers over the job runner."""

from __future__ import annotations

from celery import shared_task

from flakeguard.jobs import run_job
from ingest import services


# Routed to runs-ingest by CELERY task_routes (the per-task queue attribute is deprecated).
@shared_task(name="ingest.ingest_run", ignore_result=True)
def ingest_run_task(job_id: int) -> None:
    run_job(job_id, services.ingest_run_job)
