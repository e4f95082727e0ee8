"""The "github" file source of ingest jobs: a run attempt's JUnit artifacts, fetched from GitHub.

GitHub lists a run's artifacts across all its attempts, and an artifact carries
no attempt number, so each one is attributed to the attempt whose start came
last before the artifact was created. Artifacts whose names do not match the
repository's pattern are left alone. Each artifact is recorded once: one
already ingested, expired (410) or too large is never downloaded again, and an
expired or oversized one is recorded as such instead of failing the run.
Downloads stream to a temporary folder under a size cap and are deleted when
the run is stored.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from ingest.models import Repository, WorkflowRun
from ingest.runs import RunFile, RunInfo
from ingest.timestamps import parse_timestamp
from jobs.errors import PermanentJobError, TransientJobError
from polling.clients import client_for
from polling.github import (
    ArtifactInfo,
    GitHubClient,
    GitHubError,
    Gone,
    RateLimited,
    TooLarge,
    Unavailable,
    artifact_matches,
)
from polling.models import Artifact, ArtifactState, GitHubSettings

logger = logging.getLogger(__name__)

_DONE = (ArtifactState.INGESTED, ArtifactState.EXPIRED, ArtifactState.TOO_LARGE)


@contextmanager
def fetch_github_run(
    run: RunInfo, payload: dict[str, Any]
) -> Iterator[tuple[RunInfo, list[RunFile]]]:
    """Download the attempt's matching artifacts; yield the run and the ZIPs on disk."""
    repository = Repository.objects.filter(full_name=run.repo).first()
    if repository is None:
        raise PermanentJobError(f"repository {run.repo} is not registered")
    if WorkflowRun.objects.filter(
        repository=repository, run_id=run.run_id, run_attempt=run.run_attempt
    ).exists():
        yield run, []  # stored already (a redelivered job): nothing to fetch
        return
    github = GitHubSettings.objects.filter(repository=repository).first()
    pattern = github.artifact_pattern if github else "*"
    try:
        client = client_for(installation_id=repository.installation_id)
        # The run may have been re-run since this job was queued (its import
        # delayed by an outage): the attempts known now tell whose artifacts are whose.
        current, _ = client.workflow_run(run.repo, run.run_id)
        latest = max(
            int(payload.get("latest_attempt") or run.run_attempt),
            int((current or {}).get("run_attempt") or 1),
        )
        starts = _attempt_starts(client, run, latest)
        artifacts = [
            a
            for a in _of_attempt(
                client.run_artifacts(run.repo, run.run_id), starts, run.run_attempt
            )
            if artifact_matches(a.name, pattern)
        ]
        run = _with_start(run, starts)
        with tempfile.TemporaryDirectory(prefix="flakeguard-artifacts-") as folder:
            files = _download(client, repository, run, artifacts, Path(folder))
            yield run, files
            Artifact.objects.filter(
                repository=repository, artifact_id__in=[a.id for a in artifacts],
                state=ArtifactState.PENDING,
            ).update(state=ArtifactState.INGESTED)  # fmt: skip
    except RateLimited as exc:
        raise TransientJobError(
            f"{exc} (resets at {datetime.fromtimestamp(exc.reset_at)})"
        ) from exc
    except Unavailable as exc:
        raise TransientJobError(str(exc)) from exc
    except GitHubError as exc:
        raise PermanentJobError(f"GitHub refused: {exc}") from exc


def _attempt_starts(client: GitHubClient, run: RunInfo, latest: int) -> dict[int, datetime]:
    """When each attempt of the run started, from GitHub's attempt endpoint."""
    starts: dict[int, datetime] = {}
    for attempt in range(1, max(latest, run.run_attempt) + 1):
        data = client.run_attempt(run.repo, run.run_id, attempt)
        value = data.get("run_started_at") or data.get("created_at")
        if value:
            starts[attempt] = parse_timestamp(value)
    return starts


def _of_attempt(
    artifacts: list[ArtifactInfo], starts: dict[int, datetime], attempt: int
) -> list[ArtifactInfo]:
    """The artifacts created during ``attempt``: after its start, before the next one's."""
    begin = starts.get(attempt)
    end = starts.get(attempt + 1)
    chosen = []
    for artifact in artifacts:
        created = artifact.created_at
        if created is None or begin is None:
            if len(starts) <= 1:  # a run with one attempt owns all its artifacts
                chosen.append(artifact)
            continue
        if created >= begin and (end is None or created < end):
            chosen.append(artifact)
    return chosen


def _with_start(run: RunInfo, starts: dict[int, datetime]) -> RunInfo:
    started = starts.get(run.run_attempt)
    if started is None or started == run.started_at:
        return run
    return RunInfo(**{**run.__dict__, "started_at": started})


def _download(
    client: GitHubClient,
    repository: Repository,
    run: RunInfo,
    artifacts: list[ArtifactInfo],
    folder: Path,
) -> list[RunFile]:
    files = []
    cap = settings.FLAKEGUARD_ARTIFACT_MAX_BYTES
    for artifact in artifacts:
        record, _ = Artifact.objects.get_or_create(
            repository=repository,
            artifact_id=artifact.id,
            defaults={
                "run_id": run.run_id,
                "run_attempt": run.run_attempt,
                "name": artifact.name,
                "size_bytes": artifact.size_bytes,
                "created_at": artifact.created_at,
            },
        )
        if record.state in _DONE:
            continue
        if artifact.expired:
            _mark(record, ArtifactState.EXPIRED, "expired before it was downloaded")
            continue
        if artifact.size_bytes > cap:
            _mark(record, ArtifactState.TOO_LARGE, f"{artifact.size_bytes:,} bytes, over {cap:,}")
            continue
        path = folder / f"{artifact.id}.zip"
        try:
            client.download_artifact(run.repo, artifact.id, path, max_bytes=cap)
        except Gone:
            _mark(record, ArtifactState.EXPIRED, "expired (410 Gone)")
            continue
        except TooLarge as exc:
            _mark(record, ArtifactState.TOO_LARGE, str(exc))
            continue
        files.append(RunFile(path=path, label=artifact.name, display=f"{artifact.name}.zip"))
    return files


def _mark(record: Artifact, state: str, error: str) -> None:
    with transaction.atomic():
        Artifact.objects.filter(pk=record.pk).update(state=state, error=error)
    logger.warning(
        "%s artifact %s (%s): %s", record.repository_id, record.artifact_id, record.name, error
    )
