"""``manage.py recompute``: rescore every test of a repository, or of all, from the whole history.

    recompute [--repo OWNER/NAME] [--json] [--no-wait]

On the embedded default (no broker) the rescoring runs here, with a progress
bar on stderr, and the command returns when it is done. With a broker it is
queued as one tests-recompute job per repository (a job already waiting or
running for a repository is reused) and the command follows the jobs'
progress until they finish; ``--no-wait`` returns once they are queued.
A summary goes to stderr; with ``--json`` stdout holds only
``{"repositories": [{"repo", "tests", "flaky", "seconds", "job"}]}``.
Exit status 1 when a recompute job ended dead.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from analysis.report import UnknownRepositoryError, repository_named
from analysis.services import enqueue_recompute, recompute_repository
from ingest.models import Repository
from jobs.models import Job, JobState
from jobs.waiting import wait_for_jobs

POLL_SECONDS = 0.5
# Without any progress for this long, say what the command is waiting for.
QUIET_WARNING_SECONDS = 30
ERROR_TAIL_CHARS = 500


class Command(BaseCommand):
    help = "Rescore the tests of one repository (--repo) or of all, from their whole history."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repo", metavar="OWNER/NAME", help="default: every repository")
        parser.add_argument(
            "--json", action="store_true", help="print only a JSON summary on stdout"
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="with a broker: return once the jobs are queued, printing their ids",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        as_json = options["json"]
        if options["repo"]:
            try:
                repositories = [repository_named(options["repo"])]
            except UnknownRepositoryError as exc:
                raise CommandError(str(exc)) from exc
        else:
            repositories = list(Repository.objects.order_by("full_name"))
        if not repositories:
            self.stderr.write("No repositories are stored yet: nothing to rescore.")
            if as_json:
                self.stdout.write(json.dumps({"repositories": []}, indent=2))
            return

        if settings.CELERY_TASK_ALWAYS_EAGER:
            # No broker: nothing else would run a queued job, so rescore here.
            summaries = [self._recompute_here(repository) for repository in repositories]
            self._report(summaries, as_json=as_json)
            return

        queued = self._enqueue(repositories)
        if options["no_wait"]:
            self._report_queued(queued, as_json=as_json)
            return
        summaries, failed = self._wait(queued)
        self._report(summaries, as_json=as_json, failed=failed)
        if failed:
            raise CommandError(
                "; ".join(
                    f"recompute of {f['repo']} failed (job {f['job']}): {f['error']}"
                    for f in failed
                )
            )

    # --- in-process -----------------------------------------------------------

    def _recompute_here(self, repository: Repository) -> dict[str, Any]:
        bar = _progress_bar(repository.full_name)

        def on_progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        with bar:
            result = recompute_repository(repository=repository, on_progress=on_progress)
        return {
            "repo": repository.full_name,
            "tests": result["tests"],
            "flaky": result["flaky"],
            "seconds": result["seconds"],
            "job": None,
        }

    # --- through the job table --------------------------------------------------

    def _enqueue(self, repositories: list[Repository]) -> list[tuple[Repository, Job, bool]]:
        queued = []
        for repository in repositories:
            job, created = enqueue_recompute(repository=repository, reason="recompute command")
            if not created:
                self.stderr.write(
                    f"{repository.full_name}: a recompute is already {job.state} as job {job.pk}"
                )
            queued.append((repository, job, created))
        return queued

    def _wait(
        self, queued: list[tuple[Repository, Job, bool]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Follow the jobs' saved progress until every one has succeeded or died."""
        ids = [job.pk for _, job, _ in queued]
        desc = queued[0][0].full_name if len(queued) == 1 else f"{len(queued)} repositories"
        with _progress_bar(desc) as bar:

            def show(jobs: dict[int, Job]) -> None:
                done = total = 0
                for job in jobs.values():
                    progress = job.progress or {}
                    job_total = int(progress.get("total") or job.result.get("tests") or 0)
                    job_done = int(progress.get("done") or 0)
                    if job.state == JobState.SUCCEEDED:
                        job_done = job_total = max(job_total, int(job.result.get("tests") or 0))
                    done, total = done + job_done, total + job_total
                bar.total = total
                bar.update(done - bar.n)

            def quiet(outstanding: int) -> None:
                bar.write(
                    f"waiting for {outstanding} job(s) on the tests-recompute queue; "
                    "is a worker running?",
                    file=sys.stderr,
                )

            jobs = wait_for_jobs(
                ids,
                on_update=show,
                on_quiet=quiet,
                poll_seconds=POLL_SECONDS,
                quiet_seconds=QUIET_WARNING_SECONDS,
            )
        summaries, failed = [], []
        for repository, queued_job, _ in queued:
            job = jobs[queued_job.pk]
            if job.state == JobState.DEAD:
                error = (job.last_error or "no error recorded").strip()
                failed.append(
                    {
                        "repo": repository.full_name,
                        "job": job.pk,
                        "error": error[-ERROR_TAIL_CHARS:],
                    }
                )
                continue
            summaries.append(
                {
                    "repo": repository.full_name,
                    "tests": job.result.get("tests", 0),
                    "flaky": job.result.get("flaky", 0),
                    "seconds": job.result.get("seconds", 0.0),
                    "job": job.pk,
                }
            )
        return summaries, failed

    # --- output ---------------------------------------------------------------

    def _report(
        self,
        summaries: list[dict[str, Any]],
        *,
        as_json: bool,
        failed: list[dict[str, Any]] | None = None,
    ) -> None:
        if as_json:
            data: dict[str, Any] = {"repositories": summaries}
            if failed:
                data["failed"] = failed
            self.stdout.write(json.dumps(data, indent=2))
        for s in summaries:
            self.stderr.write(
                f"{s['repo']}: {s['tests']:,} tests rescored, {s['flaky']:,} flaky, "
                f"{s['seconds']:.2f}s"
            )
        if len(summaries) > 1:
            self.stderr.write(
                f"{len(summaries)} repositories: "
                f"{sum(s['tests'] for s in summaries):,} tests rescored, "
                f"{sum(s['flaky'] for s in summaries):,} flaky"
            )

    def _report_queued(self, queued: list[tuple[Repository, Job, bool]], *, as_json: bool) -> None:
        if as_json:
            data = {
                "repositories": [
                    {"repo": repository.full_name, "job": job.pk, "queued": created}
                    for repository, job, created in queued
                ]
            }
            self.stdout.write(json.dumps(data, indent=2))
            return
        for repository, job, created in queued:
            what = "queued" if created else f"already {job.state}"
            self.stdout.write(f"{repository.full_name}: recompute job {job.pk} {what}")


def _progress_bar(desc: str) -> tqdm:
    return tqdm(
        total=0,
        unit="test",
        desc=desc,
        file=sys.stderr,
        mininterval=0.5 if sys.stderr.isatty() else 5,
    )
