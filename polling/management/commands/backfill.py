"""``manage.py backfill OWNER/NAME --since DATE``: import a repository's history from GitHub.

Runs as a durable job that saves its place after every run attempt, so it
resumes where it stopped after a crash or a restart, waits out a spent rate
limit, and ends with a tests-recompute. On the embedded default it runs here
with a progress bar; with a broker it is queued on the polling queue and this
command follows its progress (``--no-wait`` returns at once).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from flakeguard.jobs import drain_jobs
from flakeguard.models import Job, JobState
from ingest.models import Repository
from polling.services import enqueue_backfill


class Command(BaseCommand):
    help = "Import a repository's completed workflow runs since a date, then rescore it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("repo", metavar="OWNER/NAME")
        parser.add_argument("--since", required=True, help="ISO date, e.g. 2026-09-01")
        parser.add_argument(
            "--no-wait", action="store_true", help="with a broker: queue and return"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        repository = Repository.objects.filter(full_name=options["repo"]).first()
        if repository is None:
            raise CommandError(
                f"unknown repository {options['repo']!r}: add it with "
                f"`python manage.py add_repo {options['repo']}`"
            )
        try:
            since = datetime.fromisoformat(options["since"])
        except ValueError as exc:
            raise CommandError(f"--since must be an ISO date, not {options['since']!r}") from exc
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        job, _ = enqueue_backfill(repository=repository, since=since)
        self.stderr.write(f"backfill of {repository.full_name} since {since.date()}: job {job.pk}")
        if options["no_wait"] and not settings.CELERY_TASK_ALWAYS_EAGER:
            return
        self._follow(job.pk)

    def _follow(self, job_id: int) -> None:
        in_process = settings.CELERY_TASK_ALWAYS_EAGER
        with tqdm(total=0, unit="run", file=sys.stderr, desc="backfill") as bar:
            while True:
                job = Job.objects.get(pk=job_id)
                progress = job.progress or {}
                bar.total = len(progress.get("attempts", []))
                bar.update(int(progress.get("done", 0)) - bar.n)
                if job.state in (JobState.SUCCEEDED, JobState.DEAD):
                    break
                if not in_process:
                    time.sleep(0.5)
                    continue
                # No workers: run what is due here, and sit out a rate-limit pause.
                wait = (job.next_attempt_at - timezone.now()).total_seconds()
                if wait > 0:
                    bar.set_postfix_str(f"paused {wait:.0f}s (rate limit)")
                    time.sleep(min(wait, 5.0))
                    continue
                drain_jobs()
        if in_process:
            drain_jobs()  # the recompute it queued
        if job.state == JobState.DEAD:
            raise CommandError(f"backfill failed (job {job.pk}): {job.last_error[-500:]}")
        result = job.result
        self.stdout.write(
            f"{result['repository']}: {result['run_attempts']} run attempts, "
            f"{result['imported']} imported, {result['results_stored']:,} results; "
            f"recompute job {result['recompute_job']} queued"
        )
