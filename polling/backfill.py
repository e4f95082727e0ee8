"""Backfill: a repository's recent history imported from GitHub as one durable, resumable job.

Adding a repository queues one (``FLAKEGUARD_BACKFILL_DAYS``, never further
back than the repository keeps its artifacts); an operator can queue another
from the admin or ``manage.py backfill``. The job lists the run attempts once,
imports them oldest first and saves its place after each, so a crash or a
restart resumes where it stopped; a spent rate limit pauses it until the
reset; runs still in progress are followed until they complete. It ends by
queueing a tests-recompute of the repository.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from analysis.services import enqueue_recompute
from ingest.models import Repository
from ingest.services import ingest_run_payload
from ingest.timestamps import parse_timestamp
from jobs.dispatch import defer_eager_dispatch, drain_jobs, enqueue_job
from jobs.errors import ContinueLater, PermanentJobError, TransientJobError
from jobs.models import Job, JobKind, JobState
from jobs.runner import checkpoint, run_job
from polling.clients import client_for
from polling.discovery import COMPLETED, note_runs, repository_of, run_info_from_github
from polling.github import GitHubClient, RateLimited, Unavailable

# What GitHub keeps artifacts for unless a repository says otherwise.
GITHUB_DEFAULT_RETENTION_DAYS = 90


def enqueue_backfill(
    *, repository: Repository, since: datetime | None = None, days: int | None = None
) -> tuple[Job, bool]:
    """A durable backfill of the repository's runs created since ``since``, or in the last ``days``.

    With neither, ``FLAKEGUARD_BACKFILL_DAYS``. Days are turned into a date
    when the job starts, once it can ask GitHub how long the repository keeps
    its artifacts (nothing here calls GitHub: this runs inside webhook requests).
    """
    payload: dict[str, Any] = {"repository_id": repository.pk}
    if since is not None:
        payload["since"] = since.isoformat()
        scope = since.date().isoformat()
    else:
        payload["days"] = days or settings.FLAKEGUARD_BACKFILL_DAYS
        scope = f"{payload['days']}d"
    return enqueue_job(
        kind=JobKind.BACKFILL_REPO,
        dedup_key=f"backfill:{repository.pk}:{scope}:{timezone.now():%Y%m%dT%H%M%S.%f}",
        payload=payload,
        max_attempts=settings.FLAKEGUARD_BACKFILL_MAX_ATTEMPTS,
    )


def backfill_repository_job(
    job: Job, *, on_progress: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Job body of ``backfill_repo``: resumes from the job's saved progress."""
    repository = repository_of(job)
    try:
        since = parse_timestamp(job.payload.get("since"), field="since")
        days = int(job.payload["days"]) if since is None else None
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentJobError(f"malformed backfill payload: {exc!r}") from exc
    return backfill_repository(
        repository=repository, since=since, days=days, job=job, on_progress=on_progress
    )


def backfill_repository(
    *,
    repository: Repository,
    since: datetime | None = None,
    days: int | None = None,
    job: Job | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Import every completed run attempt created since ``since`` (or in the last ``days``), oldest first.

    Each attempt goes through the same ingest job body as polling, so one
    already imported is skipped. When every attempt is in, it queues a
    tests-recompute of the repository.
    """
    progress: dict[str, Any] = dict(job.progress) if job else {}
    report = on_progress or (lambda p: None)
    client = client_for(installation_id=repository.installation_id)
    try:
        if "attempts" not in progress:
            progress = _plan(client, repository, since=since, days=days)
            _save(job, progress)
        report(progress)
        started = time.monotonic()
        total = len(progress["attempts"])
        while progress["done"] < total:
            run_id, attempt = progress["attempts"][progress["done"]]
            run = progress["runs"][str(run_id)]
            outcome = import_github_attempt(repository=repository, run=run, attempt=attempt)
            progress = {
                **progress,
                "done": progress["done"] + 1,
                "imported": progress["imported"] + int(outcome.get("imported", False)),
                "results": progress["results"] + int(outcome.get("results_stored", 0)),
            }
            _save(job, progress)
            report(progress)
            if job and time.monotonic() - started > settings.FLAKEGUARD_BACKFILL_SLICE_SECONDS:
                raise ContinueLater(f"{progress['done']}/{total} run attempts imported")
    except RateLimited as exc:
        raise ContinueLater(
            f"rate limit spent after {progress.get('done', 0)} run attempts",
            delay=max(1.0, exc.reset_at - time.time()),
        ) from exc
    except Unavailable as exc:
        raise TransientJobError(str(exc)) from exc
    recompute, _ = enqueue_recompute(repository=repository, reason="backfill done")
    return {
        "repository": repository.full_name,
        "since": progress["since"],
        "run_attempts": len(progress["attempts"]),
        "imported": progress["imported"],
        "results_stored": progress["results"],
        "runs_followed": progress.get("followed", 0),
        "recompute_job": recompute.pk,
    }


def backfill_start(
    client: GitHubClient, repository: Repository, *, days: int, now: datetime | None = None
) -> datetime:
    """The start of a backfill of ``days``, never before the repository's artifacts expire."""
    retention = client.artifact_retention_days(repository.full_name)
    kept = min(days, retention or GITHUB_DEFAULT_RETENTION_DAYS)
    return (now or timezone.now()) - timedelta(days=kept)


def _plan(
    client: GitHubClient, repository: Repository, *, since: datetime | None, days: int | None
) -> dict[str, Any]:
    """The attempts to import, oldest first, listed once and kept with the job's progress."""
    if since is None:
        since = backfill_start(client, repository, days=days or settings.FLAKEGUARD_BACKFILL_DAYS)
    runs, _, _ = client.workflow_runs(repository.full_name, created_since=since)
    completed = [run for run in runs if run.get("status", COMPLETED) == COMPLETED]
    # Runs still going are followed by polling until they complete.
    _, followed = note_runs(repository, [run for run in runs if run not in completed])
    attempts = sorted(
        (str(run.get("created_at", "")), int(run["id"]), attempt)
        for run in completed
        for attempt in range(1, int(run.get("run_attempt") or 1) + 1)
    )
    return {
        "since": since.isoformat(),
        "attempts": [[run_id, attempt] for _, run_id, attempt in attempts],
        "runs": {str(run["id"]): _run_fields(run) for run in completed},
        "followed": followed,
        "done": 0,
        "imported": 0,
        "results": 0,
    }


def import_github_attempt(
    *, repository: Repository, run: dict[str, Any], attempt: int
) -> dict[str, Any]:
    """Fetch and store one run attempt now, in this process (what its ingest job would do)."""
    info = run_info_from_github(repository.full_name, run, attempt=attempt)
    payload = {
        "run": info.to_json(),
        "source": "github",
        "latest_attempt": int(run.get("run_attempt") or attempt),
    }
    return ingest_run_payload(payload)


def _run_fields(run: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "name", "head_branch", "head_sha", "event", "run_attempt", "created_at",
            "run_started_at", "updated_at", "status")  # fmt: skip
    return {key: run.get(key) for key in keep}


def _save(job: Job | None, progress: dict[str, Any]) -> None:
    if job is not None:
        checkpoint(job, progress)


def run_backfill_here(
    job: Job, *, on_progress: Callable[[dict[str, Any]], None] | None = None
) -> Job:
    """Carry a queued backfill job through in this process: the embedded default has no worker.

    It goes through the job runner like on a worker (claims, checkpoints, a
    pause for a spent rate limit, slices), with ``on_progress`` told of each
    attempt; the analyses of the runs it stores wait for its end, so that one
    rescore takes them in. Returns the job as it ended.
    """

    def service(claimed: Job) -> dict[str, Any]:
        return backfill_repository_job(claimed, on_progress=on_progress)

    while True:
        with defer_eager_dispatch([JobKind.ANALYZE_RUN], hold=[JobKind.BACKFILL_REPO]):
            run_job(job.pk, service)
        job = Job.objects.get(pk=job.pk)
        if job.state in (JobState.SUCCEEDED, JobState.DEAD):
            drain_jobs()  # the recompute it queued
            return job
        # Paused (a spent rate limit) or between two slices: wait until due.
        time.sleep(min(5.0, max(0.0, (job.next_attempt_at - timezone.now()).total_seconds())))
