"""GitHub-side services: register repositories, poll them, turn workflow runs into ingest jobs.

Every completed run attempt becomes one ingest job, deduplicated by
``repo:run:attempt`` exactly like a file import, whether it was found by
polling, announced by a webhook, or walked by a backfill. The job fetches the
run's JUnit artifacts from GitHub when it runs (``polling.artifacts``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction

from flakeguard.jobs import enqueue_job
from flakeguard.models import Job, JobKind
from ingest.models import Repository
from ingest.runs import RunInfo
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
        started_at=_when(run.get("run_started_at") or run.get("created_at")),
        completed_at=_when(run.get("updated_at")),
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


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
