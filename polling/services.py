"""GitHub-side services: register repositories, poll them, turn workflow runs into ingest jobs.

Every completed run attempt becomes one ingest job, deduplicated by
``repo:run:attempt`` exactly like a file import, whether it was found by
polling, announced by a webhook, or walked by a backfill. The job fetches the
run's JUnit artifacts from GitHub when it runs (``polling.artifacts``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from flakeguard.jobs import (
    ContinueLater,
    PermanentJobError,
    TransientJobError,
    checkpoint,
    enqueue_job,
)
from flakeguard.models import Job, JobKind
from ingest.models import Repository
from ingest.runs import RunInfo
from polling.clients import client_for
from polling.github import GitHubError, RateLimited, Unavailable, parse_time
from polling.models import GitHubSettings

logger = logging.getLogger(__name__)


def add_repository(
    *, full_name: str, installation_id: int | None = None, default_branch: str = ""
) -> tuple[Repository, bool]:
    """Register ``owner/name`` (idempotent; an installation id given later is kept)."""
    owner, _, name = full_name.partition("/")
    if not owner or not name or "/" in name or " " in full_name:
        raise ValueError(f"repository must be written owner/name, not {full_name!r}")
    with transaction.atomic():
        repository, created = Repository.objects.get_or_create(full_name=full_name)
        changed = []
        if installation_id is not None and repository.installation_id != installation_id:
            repository.installation_id = installation_id
            changed.append("installation_id")
        if default_branch and repository.default_branch != default_branch:
            repository.default_branch = default_branch
            changed.append("default_branch")
        if changed:
            repository.save(update_fields=changed)
        GitHubSettings.objects.get_or_create(repository=repository)
    return repository, created


def run_info_from_github(repo: str, run: dict[str, Any], *, attempt: int | None = None) -> RunInfo:
    """The RunInfo of one attempt of a workflow run as GitHub's REST API describes it."""
    return RunInfo(
        repo=repo,
        run_id=int(run["id"]),
        run_attempt=int(attempt or run.get("run_attempt") or 1),
        sha=str(run.get("head_sha", "")),
        branch=str(run.get("head_branch") or ""),
        event=str(run.get("event") or ""),
        workflow=str(run.get("name") or ""),
        started_at=parse_time(run.get("run_started_at") or run.get("created_at")),
        completed_at=parse_time(run.get("updated_at")),
    )


def enqueue_github_run(*, repository: Repository, run: dict[str, Any]) -> list[tuple[Job, bool]]:
    """An ingest job for the run's latest attempt and for earlier attempts not queued yet.

    A re-run replaces the run's attempt number in GitHub's listings, so an
    attempt that came and went between two polls is only seen through its
    successor; its job is queued too (the artifacts tell the attempts apart).
    """
    latest = int(run.get("run_attempt") or 1)
    queued = []
    with transaction.atomic():
        for attempt in range(1, latest + 1):
            info = run_info_from_github(repository.full_name, run, attempt=attempt)
            if attempt < latest and Job.objects.filter(dedup_key=info.dedup_key).exists():
                continue
            queued.append(
                enqueue_job(
                    kind=JobKind.INGEST_RUN,
                    dedup_key=info.dedup_key,
                    payload={"run": info.to_json(), "source": "github", "latest_attempt": latest},
                )
            )
    return queued


# --- polling ------------------------------------------------------------------


def schedule_polls(*, now: datetime | None = None) -> int:
    """Beat's fan-out: a poll job for every repository whose polling is due."""
    now = now or timezone.now()
    queued = 0
    due = GitHubSettings.objects.filter(polling_enabled=True).filter(
        Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now)
    )
    for github in due.select_related("repository"):
        with transaction.atomic():
            # Claim the slot first: a second Beat tick finds it taken.
            claimed = (
                GitHubSettings.objects.filter(pk=github.pk)
                .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
                .update(next_poll_at=now + timedelta(seconds=github.poll_interval_seconds))
            )
            if not claimed:
                continue
            slot = int(now.timestamp()) // max(1, github.poll_interval_seconds)
            _, created = enqueue_job(
                kind=JobKind.POLL_REPO,
                dedup_key=f"poll:{github.repository_id}:{slot}",
                payload={"repository_id": github.repository_id},
            )
            queued += created
    return queued


def poll_repository_job(job: Job) -> dict[str, Any]:
    """Job body of ``poll_repo``."""
    repository = _repository_of(job)
    return poll_repository(repository=repository)


def poll_repository(*, repository: Repository) -> dict[str, Any]:
    """Find the repository's completed runs newer than its cursor and queue their ingest jobs.

    The first page is a conditional request on the ETag of the last poll, so
    a repository with nothing new costs no rate limit. A spent rate limit
    pauses the repository's polling until the reset instead of retrying.
    """
    github, _ = GitHubSettings.objects.get_or_create(repository=repository)
    now = timezone.now()
    window = timedelta(days=settings.FLAKEGUARD_POLL_WINDOW_DAYS)
    seen_until = github.runs_seen_until or now
    # Whole days, so that the query (and its ETag) stays the same all day.
    since = (min(seen_until, now) - window).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        runs, etag, not_modified = client_for(repository).completed_runs(
            repository.full_name, etag=github.runs_etag, created_since=since
        )
    except RateLimited as exc:
        resume = datetime.fromtimestamp(round(exc.reset_at), tz=now.tzinfo)
        GitHubSettings.objects.filter(pk=github.pk).update(
            next_poll_at=resume, last_poll_error=f"rate limit spent; polling resumes at {resume}"
        )
        logger.warning("%s: rate limit spent, polling paused until %s", repository, resume)
        return {"repository": repository.full_name, "paused_until": resume.isoformat()}
    except Unavailable as exc:
        raise TransientJobError(str(exc)) from exc
    except GitHubError as exc:
        GitHubSettings.objects.filter(pk=github.pk).update(last_poll_error=str(exc))
        raise PermanentJobError(f"polling {repository.full_name}: {exc}") from exc
    queued = _queue_new_runs(repository, runs)
    newest = max((parse_time(r.get("created_at")) for r in runs), default=None)
    GitHubSettings.objects.filter(pk=github.pk).update(
        runs_etag=etag,
        runs_seen_until=max(filter(None, [newest, github.runs_seen_until]), default=None),
        last_polled_at=now,
        last_poll_error="",
    )
    logger.info(
        "%s polled: %s completed runs listed%s, %s ingest jobs queued",
        repository.full_name,
        len(runs),
        " (not modified)" if not_modified else "",
        queued,
    )
    return {
        "repository": repository.full_name,
        "runs_listed": len(runs),
        "not_modified": not_modified,
        "jobs_queued": queued,
    }


def _queue_new_runs(repository: Repository, runs: list[dict[str, Any]]) -> int:
    keys = {
        run_info_from_github(repository.full_name, run).dedup_key: run
        for run in runs
        if run.get("status", "completed") == "completed"
    }
    known = set(Job.objects.filter(dedup_key__in=list(keys)).values_list("dedup_key", flat=True))
    queued = 0
    for key, run in keys.items():
        if key in known:
            continue
        queued += sum(created for _, created in enqueue_github_run(repository=repository, run=run))
    return queued


# --- backfill -----------------------------------------------------------------


def enqueue_backfill(*, repository: Repository, since: datetime) -> tuple[Job, bool]:
    """A durable backfill of the repository's completed runs created since ``since``."""
    return enqueue_job(
        kind=JobKind.BACKFILL_REPO,
        dedup_key=f"backfill:{repository.pk}:{since.date().isoformat()}:{timezone.now():%Y%m%dT%H%M%S}",
        payload={"repository_id": repository.pk, "since": since.isoformat()},
        max_attempts=settings.FLAKEGUARD_BACKFILL_MAX_ATTEMPTS,
    )


def backfill_repository_job(job: Job) -> dict[str, Any]:
    """Job body of ``backfill_repo``: resumes from the job's saved progress."""
    repository = _repository_of(job)
    try:
        since = datetime.fromisoformat(job.payload["since"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentJobError(f"malformed backfill payload: {exc!r}") from exc
    return backfill_repository(repository=repository, since=since, job=job)


def backfill_repository(
    *,
    repository: Repository,
    since: datetime,
    job: Job | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Import every completed run attempt created since ``since``, oldest first, then rescore.

    The list of run attempts is taken once and kept with the job's progress;
    each attempt is then imported in turn (through the same ingest job body as
    polling, so an attempt already imported is skipped) and the position is
    saved after each, so a crash or restart resumes where it stopped. A spent
    rate limit pauses the job until the reset. When every attempt is in, it
    queues a tests-recompute of the repository.
    """
    from analysis.services import enqueue_recompute  # the last step hands over to analysis

    progress: dict[str, Any] = dict(job.progress) if job else {}
    report = on_progress or (lambda p: None)
    try:
        if "attempts" not in progress:
            runs, _, _ = client_for(repository).completed_runs(
                repository.full_name, created_since=since
            )
            attempts = sorted(
                (str(run.get("created_at", "")), int(run["id"]), attempt)
                for run in runs
                for attempt in range(1, int(run.get("run_attempt") or 1) + 1)
            )
            progress = {
                "attempts": [[run_id, attempt] for _, run_id, attempt in attempts],
                "runs": {str(run["id"]): _run_fields(run) for run in runs},
                "done": 0,
                "imported": 0,
                "results": 0,
            }
            _save(job, progress)
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
        "run_attempts": len(progress["attempts"]),
        "imported": progress["imported"],
        "results_stored": progress["results"],
        "recompute_job": recompute.pk,
    }


def import_github_attempt(
    *, repository: Repository, run: dict[str, Any], attempt: int
) -> dict[str, Any]:
    """Fetch and store one run attempt now, in this process (what its ingest job would do)."""
    from ingest.services import ingest_run_payload

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


def _repository_of(job: Job) -> Repository:
    try:
        return Repository.objects.get(pk=int(job.payload["repository_id"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentJobError(f"malformed payload: {exc!r}") from exc
    except Repository.DoesNotExist as exc:
        raise PermanentJobError(f"repository {job.payload['repository_id']} is gone") from exc
