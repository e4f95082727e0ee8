"""``manage.py backfill OWNER/NAME [--since DATE | --days N]``: import a repository's history from GitHub.

Runs as a durable job that saves its place after every run attempt, so it
resumes where it stopped after a crash or a restart, waits out a spent rate
limit, and ends with a tests-recompute. On the embedded default it runs here
with a progress bar; with a broker it is queued on the polling queue and this
command follows its progress (``--no-wait`` returns at once).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.models import Repository
from ingest.timestamps import parse_timestamp
from jobs.dispatch import defer_eager_dispatch
from jobs.models import JobKind
from polling.backfill import enqueue_backfill
from polling.management.progress import follow_backfill


class Command(BaseCommand):
    help = (
        "Import a repository's workflow runs since a date (or of the last days), then rescore it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("repo", metavar="OWNER/NAME")
        when = parser.add_mutually_exclusive_group()
        when.add_argument("--since", help="ISO date, e.g. 2026-09-01")
        when.add_argument(
            "--days", type=int, help="the last N days (default FLAKEGUARD_BACKFILL_DAYS)"
        )
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
            since = parse_timestamp(options["since"], field="--since", naive_as_utc=True)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["days"] is not None and options["days"] < 1:
            raise CommandError("--days must be at least 1")
        with defer_eager_dispatch(hold=[JobKind.BACKFILL_REPO]):
            job, _ = enqueue_backfill(repository=repository, since=since, days=options["days"])
        scope = f"since {since.date()}" if since else f"of the last {job.payload['days']} days"
        self.stderr.write(f"backfill of {repository.full_name} {scope}: job {job.pk}")
        if options["no_wait"] and not settings.CELERY_TASK_ALWAYS_EAGER:
            return
        result = follow_backfill(job, stderr=self.stderr).result
        self.stdout.write(
            f"{result['repository']}: {result['run_attempts']} run attempts since "
            f"{result['since'][:10]}, {result['imported']} imported, "
            f"{result['results_stored']:,} results; recompute job {result['recompute_job']} queued"
        )
