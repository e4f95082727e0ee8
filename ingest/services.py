"""Ingestion services: enqueue run imports as jobs, and the job body that stores a run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from ingest.models import WorkflowRun
from ingest.runs import RunFile, RunInfo
from ingest.store import store_run
from jobs.dispatch import defer_eager_dispatch, enqueue_job
from jobs.errors import PermanentJobError
from jobs.models import Job, JobKind, JobState
from jobs.sweeper import retry_jobs
from jobs.waiting import FINISHED_STATES, wait_for_jobs

logger = logging.getLogger(__name__)


def enqueue_run_import(*, run: RunInfo, files: Sequence[RunFile]) -> tuple[Job, bool]:
    """Record an ingest job for one run attempt (deduplicated by repo:run:attempt).

    A dead job for the same attempt is sent back for another try, since the
    caller is asking again; a pending, running or finished one is left alone.
    Returns the job and whether this call created it.
    """
    payload = {"run": run.to_json(), "files": [f.to_json() for f in files]}
    with transaction.atomic():
        job, created = enqueue_job(
            kind=JobKind.INGEST_RUN, dedup_key=run.dedup_key, payload=payload
        )
        if not created and job.state == JobState.DEAD:
            # The files may have been fixed or moved since: take them as given now.
            Job.objects.filter(pk=job.pk).update(payload=payload)
            retry_jobs([job.pk])
    return job, created


# Where a run's files come from when they are not on disk yet, by the payload's
# "source": an app registers a context manager that fetches them into a
# temporary place and yields the run (as the source describes it) with them
# (polling registers "github"). Keeps ingest free of any outside service.
FileSource = Callable[
    [RunInfo, dict[str, Any]], AbstractContextManager[tuple[RunInfo, list[RunFile]]]
]
_FILE_SOURCES: dict[str, FileSource] = {}


def register_file_source(name: str, fetch: FileSource) -> None:
    _FILE_SOURCES[name] = fetch


def ingest_run_job(job: Job) -> dict[str, Any]:
    """Job body of ``ingest_run``: store the run attempt described by the payload.

    A retry that finds its run stored is the same import: an earlier attempt
    committed the run and was lost before its job was marked done (a worker
    killed, the database gone between the two commits). It reports what that
    attempt stored, so the command waiting on it counts the run as imported.
    """
    result = ingest_run_payload(job.payload)
    if result["imported"] or job.attempts <= 1:
        return result
    run = RunInfo.from_json(job.payload["run"])
    stored = (
        WorkflowRun.objects.filter(
            repository__full_name=run.repo, run_id=run.run_id, run_attempt=run.run_attempt
        )
        .values("pk", "results_count", "files_count", "file_errors")
        .first()
    )
    if stored is None:
        return result
    return {
        **result,
        "imported": True,
        "run_pk": stored["pk"],
        "results_stored": stored["results_count"],
        "files_stored": stored["files_count"],
        "files_refused": stored["file_errors"],
        "stored_by_an_earlier_attempt": True,
    }


def ingest_run_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Store the run attempt an ingest payload describes (files on disk, or from a source)."""
    try:
        run = RunInfo.from_json(payload["run"])
        source = payload.get("source")
        files = [RunFile.from_json(f) for f in payload.get("files", [])]
        if source is not None and source not in _FILE_SOURCES:
            raise ValueError(f"unknown file source {source!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentJobError(f"malformed ingest payload: {exc!r}") from exc
    if source is None:
        return store_run(run=run, files=files).as_dict()
    with _FILE_SOURCES[source](run, payload) as (described, fetched):
        return store_run(run=described, files=fetched).as_dict()


@dataclass
class ImportSummary:
    runs_imported: int = 0
    # Imported attempts that came with no report at all (every job cancelled
    # or crashed before writing one): a real CI outcome, stored with zero results.
    runs_without_reports: int = 0
    runs_skipped: int = 0
    results_stored: int = 0
    files_refused: list[dict[str, str]] = field(default_factory=list)
    runs_failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "runs_imported": self.runs_imported,
            "runs_without_reports": self.runs_without_reports,
            "runs_skipped": self.runs_skipped,
            "results_stored": self.results_stored,
            "files_refused": self.files_refused,
            "runs_failed": self.runs_failed,
            "seconds": round(self.seconds, 3),
            "results_per_second": round(self.results_stored / self.seconds) if self.seconds else 0,
        }


ProgressCallback = Callable[[int], None]


def import_runs(
    *,
    runs: Sequence[tuple[RunInfo, Sequence[RunFile]]],
    on_progress: ProgressCallback | None = None,
    on_waiting: Callable[[int], None] | None = None,
    poll_seconds: float = 0.2,
) -> ImportSummary:
    """Import run attempts through the job table and wait until every job is done.

    On the embedded default each job runs as it is enqueued; with a broker
    the jobs go to the runs-ingest workers and this polls the job rows.
    ``on_progress(n)`` is told of each batch of finished runs; ``on_waiting``
    of how many are still outstanding when nothing moved for a while.
    """
    started = time.perf_counter()
    progress = on_progress or (lambda n: None)
    tracked: list[tuple[int, bool]] = []  # (job id, already done before this import)
    reportless: set[int] = set()  # jobs of attempts given no report file
    # In-process, each stored run would be analyzed before the next is read;
    # deferred, the analysis meets the whole import as one backlog.
    with defer_eager_dispatch([JobKind.ANALYZE_RUN]):
        for run, files in runs:
            job, created = enqueue_run_import(run=run, files=files)
            already_done = not created and job.state == JobState.SUCCEEDED
            tracked.append((job.pk, already_done))
            if not files:
                reportless.add(job.pk)
            if settings.CELERY_TASK_ALWAYS_EAGER or already_done:
                progress(1)
    ids = [pk for pk, _ in tracked]
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        counted = sum(1 for _, done in tracked if done)

        def count_finished(jobs: dict[int, Job]) -> None:
            nonlocal counted
            done = sum(1 for job in jobs.values() if job.state in FINISHED_STATES)
            if done > counted:
                progress(done - counted)
                counted = done

        wait_for_jobs(ids, on_update=count_finished, on_quiet=on_waiting, poll_seconds=poll_seconds)
    summary = ImportSummary()
    jobs = Job.objects.in_bulk(ids)
    for pk, already_done in tracked:
        job = jobs[pk]
        if job.state == JobState.DEAD:
            summary.runs_failed.append(
                {"job": job.pk, "run": job.dedup_key, "error": job.last_error[-500:]}
            )
            continue
        if already_done or not job.result.get("imported"):
            summary.runs_skipped += 1
            continue
        summary.runs_imported += 1
        summary.runs_without_reports += pk in reportless
        summary.results_stored += job.result.get("results_stored", 0)
        summary.files_refused.extend(job.result.get("files_refused", []))
    summary.seconds = time.perf_counter() - started
    return summary
