"""``manage.py ingest_junit``: import JUnit reports, from a manifest or for one run.

    ingest_junit --manifest PATH [--json]
    ingest_junit --repo OWNER/NAME --run-id N --run-attempt N --sha SHA --branch B
                 --event E --started-at T PATH... [--json]

Runs go through the job table (runs-ingest). Progress and logs go to stderr;
with ``--json`` stdout holds only the summary. A run attempt already imported
is skipped. Exit status 0 when every run was imported or skipped (files refused
inside a run are listed, not fatal), 1 when a run failed or a manifest line
was invalid, 2 for unusable arguments.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from ingest.manifest import ManifestError, read_manifest
from ingest.runs import RunFile, RunInfo
from ingest.services import ImportSummary, import_runs
from ingest.timestamps import parse_timestamp


class Command(BaseCommand):
    help = (
        "Import JUnit XML reports (XML files or ZIP artifacts) for one run or a manifest of runs."
    )
    # The system checks load every URL module, which an import never uses: half
    # a second of each CI upload. `manage.py check`, `migrate` and `runserver`
    # still run them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "paths", nargs="*", metavar="PATH", help="report files of one run (.xml or .zip)"
        )
        parser.add_argument("--manifest", type=Path, help="JSON-lines run manifest (see README)")
        parser.add_argument("--repo", help="OWNER/NAME")
        parser.add_argument("--run-id", type=int)
        parser.add_argument("--run-attempt", type=int, default=1)
        parser.add_argument("--sha")
        parser.add_argument("--branch", default="")
        parser.add_argument("--event", default="push")
        parser.add_argument("--workflow", default="")
        parser.add_argument("--started-at", help="ISO-8601 time with zone")
        parser.add_argument("--job", default="", help="configuration label for every PATH")
        parser.add_argument(
            "--json", action="store_true", help="print only a JSON summary on stdout"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        as_json = options["json"]
        problems: list[dict[str, Any]] = []
        if options["manifest"]:
            if options["paths"]:
                raise CommandError("give either --manifest or report PATHs, not both")
            try:
                entries, bad_lines = read_manifest(options["manifest"])
            except ManifestError as exc:
                raise CommandError(str(exc)) from exc
            runs = [(entry.run, entry.files) for entry in entries]
            problems = [{"line": p.line, "error": p.error} for p in bad_lines]
            for problem in problems:
                self.stderr.write(f"manifest line {problem['line']}: {problem['error']}")
        else:
            runs = [self._single_run(options)]

        bar = tqdm(
            total=len(runs),
            unit="run",
            desc="importing",
            file=sys.stderr,
            disable=len(runs) < 2,
            mininterval=0.5 if sys.stderr.isatty() else 5,
        )
        with bar:
            summary = import_runs(
                runs=runs,
                on_progress=bar.update,
                on_waiting=lambda n: bar.write(
                    f"waiting for {n} run(s) on the runs-ingest queue; is a worker running?",
                    file=sys.stderr,
                ),
            )
        self._report(summary, problems, as_json=as_json)
        if summary.runs_failed or problems:
            sys.exit(1)

    def _single_run(self, options: dict[str, Any]) -> tuple[RunInfo, list[RunFile]]:
        missing = [
            flag
            for flag, key in (
                ("--repo", "repo"),
                ("--run-id", "run_id"),
                ("--sha", "sha"),
                ("--started-at", "started_at"),
            )
            if not options[key]
        ]
        if missing:
            raise CommandError(f"missing {', '.join(missing)} (or use --manifest)")
        if not options["paths"]:
            raise CommandError("give at least one report PATH")
        try:
            started_at = parse_timestamp(options["started_at"], field="--started-at", required=True)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        run = RunInfo(
            repo=options["repo"],
            run_id=options["run_id"],
            run_attempt=options["run_attempt"],
            sha=options["sha"],
            branch=options["branch"],
            event=options["event"],
            workflow=options["workflow"],
            started_at=started_at,
        )
        files = [
            RunFile(
                path=Path(p).resolve(),
                label=options["job"],
                display=p,
                folder_label=Path(p).resolve().parent.name,
            )
            for p in options["paths"]
        ]
        return run, files

    def _report(
        self, summary: ImportSummary, problems: list[dict[str, Any]], *, as_json: bool
    ) -> None:
        data = summary.as_json()
        if problems:
            data["manifest_errors"] = problems
        if as_json:
            self.stdout.write(json.dumps(data, indent=2))
            return
        reportless = (
            f" ({summary.runs_without_reports} with no report file: stored with zero results)"
            if summary.runs_without_reports
            else ""
        )
        self.stdout.write(
            f"{summary.runs_imported} run(s) imported{reportless}, "
            f"{summary.runs_skipped} skipped as already "
            f"imported, {summary.results_stored:,} results stored in {summary.seconds:.2f}s "
            f"({data['results_per_second']:,} results/s)."
        )
        for refused in summary.files_refused:
            self.stdout.write(f"  refused {refused['path']}: {refused['error']}")
        for failed in summary.runs_failed:
            self.stdout.write(
                f"  FAILED {failed['run']} (job {failed['job']}): {failed['error'].splitlines()[-1]}"
            )
