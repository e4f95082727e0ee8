"""``manage.py poll_github [--repo OWNER/NAME] --once``: poll GitHub now.

Polls every repository with polling on (or the one named), queues an ingest
job per new completed run attempt and, on the embedded default, carries those
jobs through (download, store, analyze) before returning.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.models import Repository
from jobs.dispatch import drain_jobs
from polling.discovery import poll_repository
from polling.github import GitHubError
from polling.models import GitHubSettings


class Command(BaseCommand):
    help = "Poll GitHub for completed workflow runs now and queue their imports."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repo", metavar="OWNER/NAME")
        parser.add_argument(
            "--once", action="store_true", help="poll once and return (the only mode)"
        )
        parser.add_argument("--json", action="store_true", help="print only a JSON summary")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["repo"]:
            repository = Repository.objects.filter(full_name=options["repo"]).first()
            if repository is None:
                raise CommandError(
                    f"unknown repository {options['repo']!r}: add it with "
                    f"`python manage.py add_repo {options['repo']}`"
                )
            repositories = [repository]
        else:
            repositories = [
                g.repository
                for g in GitHubSettings.objects.filter(polling_enabled=True).select_related(
                    "repository"
                )
            ]
        if not repositories:
            raise CommandError("no repository to poll: add one with `python manage.py add_repo`")
        summaries = []
        for repository in repositories:
            try:
                summaries.append(poll_repository(repository=repository))
            except GitHubError as exc:
                raise CommandError(f"{repository.full_name}: {exc}") from exc
        ran = drain_jobs() if settings.CELERY_TASK_ALWAYS_EAGER else 0
        if options["json"]:
            self.stdout.write(json.dumps({"repositories": summaries, "jobs_run": ran}, indent=2))
            return
        for s in summaries:
            if "paused_until" in s:
                self.stdout.write(
                    f"{s['repository']}: rate limit spent, paused until {s['paused_until']}"
                )
                continue
            self.stdout.write(
                f"{s['repository']}: {s['runs_listed']} runs listed"
                f"{' (not modified)' if s['not_modified'] else ''}, {s['jobs_queued']} imports queued"
            )
        if settings.CELERY_TASK_ALWAYS_EAGER:
            self.stdout.write(f"{ran} queued jobs run in this process")
