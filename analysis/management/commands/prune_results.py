"""``manage.py prune_results``: remove the results older than the retention, now.

    prune_results [--days N] [--repo OWNER/NAME] [--dry-run] [--json]
                  [--batch-size N] [--time-budget SECONDS]

What Beat's daily ``analysis.enforce_retention`` does (``analysis.retention``),
for an operator: ``--days`` defaults to ``FLAKEGUARD_RETENTION_DAYS`` (0 keeps
everything), ``--dry-run`` counts what would go and writes nothing. Progress
goes to stderr; stdout holds a summary, or with ``--json`` only the summary as
JSON (``runs``, ``results``, ``batches``, ``finished``, ``repositories``, …).
Unlike the Beat run it has no time budget unless given one.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analysis.report import UnknownRepositoryError, repository_named
from analysis.retention import PruneSummary, prune_results


class Command(BaseCommand):
    help = "Remove the test results of runs older than the retention; runs, scores, snapshots stay."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=int, help="keep this many days (default FLAKEGUARD_RETENTION_DAYS)"
        )
        parser.add_argument("--repo", metavar="OWNER/NAME", help="default: every repository")
        parser.add_argument("--dry-run", action="store_true", help="count, remove nothing")
        parser.add_argument(
            "--batch-size",
            type=int,
            help="results per transaction (FLAKEGUARD_RETENTION_BATCH_SIZE)",
        )
        parser.add_argument(
            "--time-budget",
            type=float,
            metavar="SECONDS",
            help="stop after this long (default: none)",
        )
        parser.add_argument(
            "--json", action="store_true", help="print only a JSON summary on stdout"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["days"] is not None and options["days"] < 0:
            raise CommandError("--days must be 0 (keep everything) or more")
        repository = None
        if options["repo"]:
            try:
                repository = repository_named(options["repo"])
            except UnknownRepositoryError as exc:
                raise CommandError(str(exc)) from exc

        def progress(repo: str, runs: int, results: int) -> None:
            self.stderr.write(f"{repo}: {runs:,} runs emptied, {results:,} results removed")

        budget = options["time_budget"]
        summary = prune_results(
            days=options["days"],
            batch_size=options["batch_size"],
            time_budget=float("inf") if budget is None else budget,
            dry_run=options["dry_run"],
            repository=repository,
            on_progress=progress,
        )
        if options["json"]:
            self.stdout.write(json.dumps(summary.as_dict(), indent=2))
            return
        self.stdout.write(_describe(summary))


def _describe(summary: PruneSummary) -> str:
    if summary.cutoff is None:
        return "Retention is off (0 days): every result is kept."
    verb = "would remove" if summary.dry_run else "removed"
    lines = [
        f"Runs started before {summary.cutoff} ({summary.days} days): {verb} "
        f"{summary.results:,} results of {summary.runs:,} runs"
        + ("" if summary.dry_run else f" in {summary.batches:,} batches, {summary.seconds:.1f}s")
    ]
    lines += [f"  {r.repo}: {r.results:,} results of {r.runs:,} runs" for r in summary.repositories]
    if summary.waiting_for_analysis:
        lines.append(
            f"  {summary.waiting_for_analysis:,} old runs not analyzed yet keep their results "
            "until they are"
        )
    if not summary.finished:
        lines.append("  stopped at the time budget: run it again to carry on")
    return "\n".join(lines)
