"""``manage.py snapshot [--repo OWNER/NAME] [--backfill DAYS]``: the dashboard's daily numbers.

Beat takes today's snapshot every hour; this takes it now, and with
``--backfill DAYS`` fills the missing days up to the latest run from the
stored history (and takes no snapshot today for a history that ended more
than DAYS ago).
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from analysis.snapshots import backfill_snapshots, take_snapshot
from ingest.models import Repository


class Command(BaseCommand):
    help = "Take today's snapshot of each repository (tests by status, CI time lost)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repo", metavar="OWNER/NAME")
        parser.add_argument("--backfill", type=int, default=0, metavar="DAYS")

    def handle(self, *args, repo: str | None, backfill: int, **options) -> None:
        repositories = Repository.objects.all()
        if repo:
            repositories = repositories.filter(full_name=repo)
            if not repositories.exists():
                raise CommandError(f"no repository {repo!r}")
        today = timezone.now().date()
        for repository in repositories:
            filled = backfill_snapshots(repository, days=backfill) if backfill else 0
            latest = repository.runs.order_by("-started_at").values_list("started_at", flat=True)
            last_run = latest.first()
            if backfill and last_run and last_run.date() < today - timedelta(days=backfill):
                # A history that ended long ago (an import of old runs): its trend
                # ends with its runs, not with a lone point today.
                self.stderr.write(f"{repository}: {filled} days filled up to its latest run")
                continue
            take_snapshot(repository, day=today)
            self.stderr.write(f"{repository}: snapshot taken, {filled} earlier days filled")
