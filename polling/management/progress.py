"""A backfill's progress on stderr, for the commands that start one (``add_repo``, ``backfill``)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from django.conf import settings
from django.core.management.base import CommandError
from tqdm import tqdm

from jobs.models import Job, JobState
from jobs.waiting import wait_for_jobs
from polling.backfill import run_backfill_here


def follow_backfill(job: Job, *, stderr: TextIO | None = None) -> Job:
    """Show the backfill's progress until it succeeds; on the embedded default, run it here.

    Raises CommandError with the job's error when it ends dead.
    """
    job = _follow(job, stderr=stderr)
    if job.state == JobState.DEAD:
        raise CommandError(f"backfill failed (job {job.pk}): {job.last_error[-500:]}")
    return job


def _follow(job: Job, *, stderr: TextIO | None) -> Job:
    with tqdm(total=0, unit="run", file=stderr or sys.stderr, desc="history") as bar:

        def show(progress: dict[str, Any]) -> None:
            bar.total = len(progress.get("attempts", []))
            bar.update(int(progress.get("done", 0)) - bar.n)

        if settings.CELERY_TASK_ALWAYS_EAGER:
            return run_backfill_here(job, on_progress=show)

        def quiet(outstanding: int) -> None:
            bar.write("waiting for the backfill on the polling queue; is a worker running?")

        jobs = wait_for_jobs(
            [job.pk], on_update=lambda jobs: show(jobs[job.pk].progress or {}), on_quiet=quiet
        )
        return jobs[job.pk]
