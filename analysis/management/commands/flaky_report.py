"""``manage.py flaky_report``: a repository's scored tests as JSON, a table or Markdown.

    flaky_report --repo OWNER/NAME [--format json|table|markdown]
                 [--status flaky,failing,...] [--limit N] [--all]

JSON lists every scored test unless ``--status`` or ``--limit`` narrow it, and
stdout then holds only the JSON. The table and Markdown show the tests that
need a person (flaky, failing, quarantined) with the evidence behind each, and
count the others in the header; ``--all`` shows every test. Reads only.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analysis.report import (
    NEEDS_ATTENTION,
    STATUSES,
    UnknownRepositoryError,
    flaky_report,
    render_markdown,
    render_table,
    repository_named,
    status_counts,
)


class Command(BaseCommand):
    help = "Report a repository's flaky, failing and quarantined tests with the evidence."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repo", required=True, metavar="OWNER/NAME")
        parser.add_argument(
            "--format",
            choices=["json", "table", "markdown"],
            default="table",
            help="json: one object per test on stdout alone (default: table)",
        )
        parser.add_argument(
            "--status",
            metavar="STATUS,...",
            help=f"only tests with these statuses ({', '.join(STATUSES)})",
        )
        parser.add_argument(
            "--limit", type=int, metavar="N", help="at most N tests, highest score first"
        )
        parser.add_argument(
            "--all",
            action="store_true",
            help="table and markdown: every scored test, not only those that need attention",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            repository = repository_named(options["repo"])
        except UnknownRepositoryError as exc:
            raise CommandError(str(exc)) from exc
        limit = options["limit"]
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        statuses = self._statuses(options["status"])
        if statuses is not None and options["all"]:
            raise CommandError("give either --status or --all, not both")
        output_format = options["format"]
        if statuses is None and output_format != "json" and not options["all"]:
            statuses = set(NEEDS_ATTENTION)

        rows = flaky_report(repository, statuses=statuses, limit=limit)
        if output_format == "json":
            self.stdout.write(json.dumps(rows, indent=2))
            return
        counts = status_counts(repository)
        render = render_markdown if output_format == "markdown" else render_table
        self.stdout.write(render(rows, repo=repository.full_name, counts=counts).rstrip("\n"))

    def _statuses(self, given: str | None) -> set[str] | None:
        if given is None:
            return None
        statuses = {s.strip().lower() for s in given.split(",") if s.strip()}
        unknown = sorted(statuses - set(STATUSES))
        if unknown or not statuses:
            raise CommandError(
                f"unknown status {', '.join(unknown) or repr(given)}; "
                f"choose from {', '.join(STATUSES)}"
            )
        return statuses
