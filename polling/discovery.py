"""Finding workflow runs on GitHub and turning each completed attempt into an ingest job.

Every completed run attempt becomes one ingest job, deduplicated by
``repo:run:attempt`` exactly like a file import, whether it was found by
polling, announced by a webhook, or walked by a backfill; the job fetches the
run's JUnit artifacts when it runs (``polling.artifacts``). A run seen before
it completed is followed (``FollowedRun``) and asked after on every poll until
it does, however long ago it started.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ingest.models import Repository
from ingest.runs import RunInfo
from ingest.timestamps import parse_timestamp
from jobs.dispatch import enqueue_job
from jobs.errors import PermanentJobError, TransientJobError
from jobs.models import Job, JobKind
from polling.clients import client_for
from polling.github import GitHubClient, GitHubError, RateLimited, Unavailable
from polling.models import FollowedRun, GitHubSettings

logger = logging.getLogger(__name__)

COMPLETED = "completed"


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
        started_at=parse_timestamp(run.get("run_started_at") or run.get("created_at")),
        completed_at=parse_timestamp(run.get("updated_at")),
    )


# Earlier attempts of a re-run queued with it, at most (the webhook refuses a
# run_attempt over 100).
MAX_EARLIER_ATTEMPTS = 100


def enqueue_github_run(*, repository: Repository, run: dict[str, Any]) -> list[tuple[Job, bool]]:
    """An ingest job for the run's latest attempt and for earlier attempts not queued yet.

    A re-run replaces the run's attempt number in GitHub's listings, so an
    attempt that came and went between two polls is only seen through its
    successor; its job is queued too (the artifacts tell the attempts apart).
    Whatever the run's age: a re-run of a month-old run is as welcome as a new one.
    """
    latest = int(run.get("run_attempt") or 1)
    # GitHub keeps a run's attempts to a few dozen; a larger number is not
    # GitHub's, and must not turn into as many jobs.
    earliest = max(1, latest - MAX_EARLIER_ATTEMPTS)
    infos = [
        run_info_from_github(repository.full_name, run, attempt=attempt)
        for attempt in range(earliest, latest + 1)
    ]
    queued = []
    with transaction.atomic():
        known = set(
            Job.objects.filter(dedup_key__in=[i.dedup_key for i in infos[:-1]]).values_list(
                "dedup_key", flat=True
            )
        )
        for info in infos:
            if info.run_attempt < latest and info.dedup_key in known:
                continue
            queued.append(
                enqueue_job(
                    kind=JobKind.INGEST_RUN,
                    dedup_key=info.dedup_key,
                    payload={"run": info.to_json(), "source": "github", "latest_attempt": latest},
                )
            )
    return queued


def note_runs(repository: Repository, runs: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """Queue the completed runs not queued yet and follow the others; (jobs queued, followed)."""
    completed: dict[str, dict[str, Any]] = {}
    unfinished: list[dict[str, Any]] = []
    for run in runs:
        if run.get("status", COMPLETED) == COMPLETED:
            completed[run_info_from_github(repository.full_name, run).dedup_key] = run
        else:
            unfinished.append(run)
    known = set(
        Job.objects.filter(dedup_key__in=list(completed)).values_list("dedup_key", flat=True)
    )
    queued = 0
    for key, run in completed.items():
        if key not in known:
            queued += sum(
                created for _, created in enqueue_github_run(repository=repository, run=run)
            )
    for run in unfinished:
        FollowedRun.objects.update_or_create(
            repository=repository,
            run_id=int(run["id"]),
            defaults={
                "run_attempt": int(run.get("run_attempt") or 1),
                "status": str(run.get("status") or "")[:32],
            },
        )
    return queued, len(unfinished)


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


def enqueue_poll(*, repository: Repository, cause: str) -> Job:
    """A poll of the repository now, besides its schedule (an operator asked for one)."""
    job, _ = enqueue_job(
        kind=JobKind.POLL_REPO,
        dedup_key=f"poll:{repository.pk}:{cause}:{timezone.now():%Y%m%dT%H%M%S.%f}",
        payload={"repository_id": repository.pk},
    )
    return job


def poll_repository_job(job: Job) -> dict[str, Any]:
    """Job body of ``poll_repo``."""
    return poll_repository(repository=repository_of(job))


def poll_repository(*, repository: Repository) -> dict[str, Any]:
    """Find the repository's runs newer than its cursor; queue the completed ones, follow the rest.

    The first page is a conditional request on the ETag of the last poll, so
    a repository with nothing new costs no rate limit; so are the questions
    about the runs followed. A spent rate limit pauses the repository's
    polling until the reset instead of retrying.
    """
    github, _ = GitHubSettings.objects.get_or_create(repository=repository)
    now = timezone.now()
    window = timedelta(days=settings.FLAKEGUARD_POLL_WINDOW_DAYS)
    seen_until = github.runs_seen_until or now
    # Whole days, so that the query (and its ETag) stays the same all day.
    since = (min(seen_until, now) - window).replace(hour=0, minute=0, second=0, microsecond=0)
    client = client_for(installation_id=repository.installation_id)
    try:
        runs, etag, not_modified = client.workflow_runs(
            repository.full_name, etag=github.runs_etag, created_since=since
        )
        queued, _ = note_runs(repository, runs)
        queued += _check_followed(client, repository, listed=runs)
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
    newest = max((parse_timestamp(r.get("created_at")) for r in runs), default=None)
    GitHubSettings.objects.filter(pk=github.pk).update(
        runs_etag=etag,
        runs_seen_until=max(filter(None, [newest, github.runs_seen_until]), default=None),
        last_polled_at=now,
        last_poll_error="",
    )
    following = FollowedRun.objects.filter(repository=repository).count()
    logger.info(
        "%s polled: %s runs listed%s, %s ingest jobs queued, %s runs followed until they complete",
        repository.full_name,
        len(runs),
        " (not modified)" if not_modified else "",
        queued,
        following,
    )
    return {
        "repository": repository.full_name,
        "runs_listed": len(runs),
        "not_modified": not_modified,
        "jobs_queued": queued,
        "runs_followed": following,
    }


def _check_followed(
    client: GitHubClient, repository: Repository, *, listed: list[dict[str, Any]]
) -> int:
    """Ask after each followed run the listing did not show as going; queue those that completed.

    A run the listing shows completed, or whose attempt a webhook already
    queued, is done with and needs no question.
    """
    going = {int(run["id"]) for run in listed if run.get("status", COMPLETED) != COMPLETED}
    followed_runs = list(
        FollowedRun.objects.filter(repository=repository).exclude(run_id__in=going)
    )
    keys = {
        f.pk: RunInfo(
            repo=repository.full_name, run_id=f.run_id, run_attempt=f.run_attempt, sha=""
        ).dedup_key
        for f in followed_runs
    }
    queued_already = set(
        Job.objects.filter(dedup_key__in=list(keys.values())).values_list("dedup_key", flat=True)
    )
    done = {f.pk for f in followed_runs if keys[f.pk] in queued_already}
    if done:
        FollowedRun.objects.filter(pk__in=done).delete()
    queued = 0
    for followed in followed_runs:
        if followed.pk in done:
            continue
        try:
            run, etag = client.workflow_run(
                repository.full_name, followed.run_id, etag=followed.etag
            )
        except GitHubError as exc:
            if exc.status != 404 or isinstance(exc, RateLimited | Unavailable):
                raise
            logger.info("%s run %s is gone from GitHub", repository, followed.run_id)
            followed.delete()
            continue
        if run is None:  # 304: as it was
            FollowedRun.objects.filter(pk=followed.pk).update(checked_at=timezone.now())
            continue
        if run.get("status") == COMPLETED:
            queued += sum(
                created for _, created in enqueue_github_run(repository=repository, run=run)
            )
            followed.delete()
            continue
        FollowedRun.objects.filter(pk=followed.pk).update(
            etag=etag, status=str(run.get("status") or "")[:32], checked_at=timezone.now()
        )
    return queued


def repository_of(job: Job) -> Repository:
    """The repository a polling-queue job is about, or PermanentJobError."""
    try:
        return Repository.objects.get(pk=int(job.payload["repository_id"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentJobError(f"malformed payload: {exc!r}") from exc
    except Repository.DoesNotExist as exc:
        raise PermanentJobError(f"repository {job.payload['repository_id']} is gone") from exc
