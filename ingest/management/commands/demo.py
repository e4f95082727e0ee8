"""``manage.py demo``: import the bundled sample history and show what was stored.

Generates the made-up repository's history (deterministic, a few hundred runs
with matrix jobs, re-runs, flaky and broken tests) into ``.demo/``, imports it
through the job table exactly as ``ingest_junit --manifest`` does, prints
what was stored and how fast, and ends with the repository's flaky-test report
(``flaky_report``). The runs' analyze jobs score them once the import is done:
they meet the import as one backlog, which one full rescore takes in.
Re-running starts from a clean slate for the demo repository so the timing is
always of a full import.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count, Q
from tqdm import tqdm

from ingest.junit import FAILED_OUTCOMES, Outcome
from ingest.manifest import read_manifest
from ingest.models import Repository, TestCase, TestResult, WorkflowRun
from ingest.sample_history import HistoryConfig, generate_history
from ingest.services import import_runs
from jobs.models import Job, JobKind


class Command(BaseCommand):
    help = "Import the bundled sample CI history and print what was stored and how fast."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dir",
            type=Path,
            default=settings.BASE_DIR / ".demo",
            help="where the sample files go",
        )
        parser.add_argument("--runs", type=int, default=HistoryConfig.runs)
        parser.add_argument("--tests", type=int, default=HistoryConfig.tests)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verbosity"] < 2:
            # One line per job would drown the progress bar; -v 2 brings them back.
            for name in ("flakeguard", "ingest", "analysis"):
                logging.getLogger(name).setLevel(logging.WARNING)
        config = HistoryConfig(runs=options["runs"], tests=options["tests"])
        out_dir: Path = (
            options["dir"] / f"{config.repo.replace('/', '__')}-{config.runs}x{config.tests}"
        )
        self.stderr.write(f"Generating the sample history of {config.repo} in {out_dir} ...")
        started = time.perf_counter()
        history = generate_history(out_dir, config)
        self.stderr.write(
            f"  {history.runs} runs, {history.attempts} attempts, {history.files} report files, "
            f"{history.results:,} test results ({time.perf_counter() - started:.1f}s)"
        )
        self._forget(config.repo)
        entries, problems = read_manifest(history.manifest_path)
        if problems:
            for p in problems:
                self.stderr.write(f"manifest line {p.line}: {p.error}")
            sys.exit(1)

        self.stderr.write("Importing through the job table ...")
        with tqdm(total=len(entries), unit="run", file=sys.stderr, mininterval=0.5) as bar:
            summary = import_runs(runs=[(e.run, e.files) for e in entries], on_progress=bar.update)
        self._show(config.repo, summary.as_json())
        if summary.runs_failed:
            sys.exit(1)
        self._report(config.repo)
        self._dashboard_hint()

    def _forget(self, repo: str) -> None:
        """Drop an earlier demo import of the sample repository (bulk, not row by row)."""
        repository = Repository.objects.filter(full_name=repo).first()
        if repository is None:
            return
        run_pks = list(
            WorkflowRun.objects.filter(repository=repository).values_list("pk", flat=True)
        )
        TestResult.objects.filter(run__repository=repository)._raw_delete(TestResult.objects.db)
        # Through the ORM: what refers to the runs and tests (incidents, check
        # runs, scores, quarantines) goes with them, and with the results
        # already gone this is a few statements.
        WorkflowRun.objects.filter(repository=repository).delete()
        TestCase.objects.filter(repository=repository).delete()
        Job.objects.filter(dedup_key__startswith=f"ingest:{repo}:").delete()
        Job.objects.filter(
            kind=JobKind.ANALYZE_RUN, dedup_key__in=[f"analyze:{pk}" for pk in run_pks]
        ).delete()
        repository.delete()

    def _show(self, repo: str, summary: dict[str, Any]) -> None:
        out = self.stdout.write
        repository = Repository.objects.get(full_name=repo)
        outcomes = dict(
            TestResult.objects.filter(run__repository=repository)
            .values_list("outcome")
            .annotate(n=Count("*"))
            .values_list("outcome", "n")
        )
        jobs = sorted(
            TestResult.objects.filter(run__repository=repository)
            .values_list("job", flat=True)
            .distinct()
        )
        out("")
        out(f"FlakeGuard stored the sample history of {repo}:")
        out(
            f"  runs imported      {summary['runs_imported']:>10,}  (skipped {summary['runs_skipped']})"
        )
        out(f"  test identities    {TestCase.objects.filter(repository=repository).count():>10,}")
        out(f"  results stored     {summary['results_stored']:>10,}")
        for outcome in Outcome:
            out(f"    {outcome:<16} {outcomes.get(outcome, 0):>10,}")
        out(f"  configurations     {', '.join(jobs)}")
        out(f"  files refused      {len(summary['files_refused']):>10,}")
        out(
            f"  import time        {summary['seconds']:>9.2f}s  ({summary['results_per_second']:,} results/s "
            f"on {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]})"
        )
        out("")
        out("Tests with the most failures:")
        worst = (
            TestCase.objects.filter(repository=repository)
            .annotate(
                failures=Count("results__run", filter=Q(results__outcome__in=FAILED_OUTCOMES)),
                runs=Count("results__run"),
            )
            .filter(failures__gt=0)
            .order_by("-failures")[:10]
        )
        for test in worst:
            out(f"  {test.failures:>4} of {test.runs:>4} failed  {test}")

    def _report(self, repo: str) -> None:
        """The flaky-test report, from the scores the runs' analyze jobs left."""
        if WorkflowRun.objects.filter(
            repository__full_name=repo, analyzed_at__isnull=True
        ).exists():
            # Scores are missing for some runs: with a broker their analyze jobs
            # may still be queued, or one of them died. A recompute takes those
            # runs in and returns when done, so the report covers every run.
            self.stderr.write("Some runs are not scored yet; rescoring the repository ...")
            call_command("recompute", "--repo", repo, stdout=self.stderr, stderr=self.stderr)
        # The dashboard's trends, drawn from the sample history's days.
        call_command("snapshot", "--repo", repo, "--backfill", "30", stderr=self.stderr)
        self.stdout.write("")
        call_command(
            "flaky_report",
            "--repo",
            repo,
            "--format",
            "table",
            stdout=self.stdout,
            stderr=self.stderr,
        )

    def _dashboard_hint(self) -> None:
        out = self.stdout.write
        out("")
        out("Open the dashboard:  make run  then http://127.0.0.1:8000/")
        out(
            "Sign in there (and to the admin and the API) after:  .venv/bin/python manage.py createsuperuser"
        )
