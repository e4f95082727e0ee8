"""``manage.py add_repo OWNER/NAME [--installation-id N] [--no-backfill]``: follow a repository on GitHub.

A newly added repository brings its history: the last ``FLAKEGUARD_BACKFILL_DAYS``
of runs (30 by default) are imported and scored, so its flaky tests show the
same day. On the embedded default that happens here, with a progress bar on
stderr; with a broker it is queued as a backfill job on the polling queue and
the command returns with the job's id. ``--no-backfill``
registers the repository alone.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.dispatch import defer_eager_dispatch
from jobs.models import JobKind
from polling.management.progress import follow_backfill
from polling.models import GitHubSettings
from polling.repositories import add_repository


class Command(BaseCommand):
    help = "Register a GitHub repository for polling, webhooks and check runs, with its recent history."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("repo", metavar="OWNER/NAME")
        parser.add_argument("--installation-id", type=int, help="the GitHub App installation")
        parser.add_argument("--default-branch", default="", help="default: main")
        parser.add_argument(
            "--artifact-pattern", help='artifact names holding JUnit, e.g. "junit-*"'
        )
        parser.add_argument("--poll-interval", type=int, help="seconds between polls (default 300)")
        parser.add_argument("--no-polling", action="store_true", help="rely on webhooks only")
        parser.add_argument(
            "--no-backfill", action="store_true", help="do not import the recent history"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["poll_interval"] is not None and options["poll_interval"] < 30:
            raise CommandError("--poll-interval must be at least 30 seconds")
        # On the embedded default the backfill runs below, with a progress bar,
        # rather than inside the commit that queued it.
        with defer_eager_dispatch(hold=[JobKind.BACKFILL_REPO]):
            try:
                repository, created, backfill = add_repository(
                    full_name=options["repo"],
                    installation_id=options["installation_id"],
                    default_branch=options["default_branch"],
                    artifact_pattern=options["artifact_pattern"],
                    poll_interval_seconds=options["poll_interval"],
                    polling_enabled=False if options["no_polling"] else None,
                    backfill=not options["no_backfill"],
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        github = GitHubSettings.objects.get(repository=repository)
        verb = "added" if created else "updated"
        self.stdout.write(
            f"{repository.full_name} {verb}: artifacts {github.artifact_pattern!r}, polling "
            f"{'every ' + str(github.poll_interval_seconds) + 's' if github.polling_enabled else 'off'}"
            + (f", installation {repository.installation_id}" if repository.installation_id else "")
        )
        if backfill is None:
            return
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            self.stdout.write(
                f"backfill of the last {backfill.payload['days']} days queued as job {backfill.pk}"
            )
            return
        result = follow_backfill(backfill, stderr=self.stderr).result
        self.stdout.write(
            f"history since {result['since'][:10]}: {result['run_attempts']} run attempts, "
            f"{result['imported']} imported, {result['results_stored']:,} results"
        )
