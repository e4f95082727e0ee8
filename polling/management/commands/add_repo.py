"""``manage.py add_repo OWNER/NAME [--installation-id N]``: register a repository to follow on GitHub."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from polling.services import add_repository


class Command(BaseCommand):
    help = "Register a GitHub repository for polling, webhooks and check runs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("repo", metavar="OWNER/NAME")
        parser.add_argument("--installation-id", type=int, help="the GitHub App installation")
        parser.add_argument("--default-branch", default="", help="default: main")
        parser.add_argument(
            "--artifact-pattern", help='artifact names holding JUnit, e.g. "junit-*"'
        )
        parser.add_argument("--poll-interval", type=int, help="seconds between polls (default 300)")
        parser.add_argument("--no-polling", action="store_true", help="rely on webhooks only")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            repository, created = add_repository(
                full_name=options["repo"],
                installation_id=options["installation_id"],
                default_branch=options["default_branch"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        github = repository.github
        if options["artifact_pattern"] is not None:
            github.artifact_pattern = options["artifact_pattern"]
        if options["poll_interval"] is not None:
            if options["poll_interval"] < 30:
                raise CommandError("--poll-interval must be at least 30 seconds")
            github.poll_interval_seconds = options["poll_interval"]
        if options["no_polling"]:
            github.polling_enabled = False
        github.save()
        verb = "added" if created else "updated"
        self.stdout.write(
            f"{repository.full_name} {verb}: artifacts {github.artifact_pattern!r}, polling "
            f"{'every ' + str(github.poll_interval_seconds) + 's' if github.polling_enabled else 'off'}"
            + (f", installation {repository.installation_id}" if repository.installation_id else "")
        )
