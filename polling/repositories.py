"""Repositories FlakeGuard follows on GitHub: registered, attached to an App installation, detached.

A ``workflow_run`` delivery may name a repository the App reached without our
hearing of it; it is registered from what the delivery says before its run is
queued.

Following a repository brings its history: registering one queues a backfill
of its recent runs (``FLAKEGUARD_BACKFILL_DAYS``), so a team sees its flaky
tests the day it adds FlakeGuard rather than after weeks of new runs.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from ingest.models import Repository
from jobs.models import Job
from polling.backfill import enqueue_backfill
from polling.discovery import enqueue_github_run
from polling.models import GitHubSettings

logger = logging.getLogger(__name__)

# Written to a repository's GitHub settings when the App's removal switches its
# polling off, so that installing the App again switches it back on, and only
# then: polling an operator turned off stays off.
UNINSTALLED = "polling stopped: the GitHub App was removed from this repository"


def add_repository(
    *,
    full_name: str,
    installation_id: int | None = None,
    default_branch: str = "",
    artifact_pattern: str | None = None,
    poll_interval_seconds: int | None = None,
    polling_enabled: bool | None = None,
    backfill: bool = True,
) -> tuple[Repository, bool, Job | None]:
    """Register ``owner/name`` with its GitHub settings and, when new, queue its backfill.

    Idempotent: an installation id or default branch given later is kept, the
    settings given are applied, and a repository already followed gets no
    second backfill. Returns the repository, whether it was created, and the
    backfill job queued (or None).
    """
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
        github, job = follow_repository(repository=repository, backfill=backfill)
        chosen = {
            "artifact_pattern": artifact_pattern,
            "poll_interval_seconds": poll_interval_seconds,
            "polling_enabled": polling_enabled,
        }
        chosen = {name: value for name, value in chosen.items() if value is not None}
        if chosen:
            GitHubSettings.objects.filter(pk=github.pk).update(**chosen)
    return repository, created, job


def follow_repository(
    *, repository: Repository, backfill: bool = True
) -> tuple[GitHubSettings, Job | None]:
    """Follow the repository on GitHub; the first time, queue the backfill of its history."""
    with transaction.atomic():
        github, followed = GitHubSettings.objects.get_or_create(repository=repository)
        job = enqueue_backfill(repository=repository)[0] if followed and backfill else None
    return github, job


def attach_installation_repositories(
    *, names: list[str], installation_id: int, default_branch: str = ""
) -> dict[str, Any]:
    """Register these repositories under the App installation (each new one is backfilled).

    Polling switches back on where the App's removal had switched it off.
    """
    attached: dict[str, int] = {}
    registered = []
    backfills = []
    for name in names:
        try:
            repository, created, backfill = add_repository(
                full_name=name, installation_id=installation_id, default_branch=default_branch
            )
        except ValueError:
            logger.warning("installation %s: malformed repository name %r", installation_id, name)
            continue
        attached[name] = repository.pk
        if created:
            registered.append(name)
        if backfill is not None:
            backfills.append(backfill.pk)
    resumed = GitHubSettings.objects.filter(
        repository_id__in=list(attached.values()),
        polling_enabled=False,
        last_poll_error=UNINSTALLED,
    ).update(polling_enabled=True, last_poll_error="")
    return {
        "attached": sorted(attached),
        "registered": registered,
        "polling_resumed": resumed,
        "backfill_jobs": backfills,
    }


def detach_repositories(repositories: QuerySet[Repository]) -> dict[str, Any]:
    """The App no longer reaches these repositories: forget the installation, stop polling.

    Their history, scores and quarantines stay.
    """
    rows = list(repositories.values_list("pk", "full_name"))
    pks = [pk for pk, _ in rows]
    if pks:
        Repository.objects.filter(pk__in=pks).update(installation_id=None)
        GitHubSettings.objects.filter(repository_id__in=pks, polling_enabled=True).update(
            polling_enabled=False, last_poll_error=UNINSTALLED
        )
    return {"detached": sorted(name for _, name in rows)}


def detach_installation(*, installation_id: int) -> dict[str, Any]:
    """Every repository of a removed installation, listed in its payload or not."""
    return detach_repositories(Repository.objects.filter(installation_id=installation_id))


def detach_installation_repositories(*, names: list[str], installation_id: int) -> dict[str, Any]:
    return detach_repositories(
        Repository.objects.filter(installation_id=installation_id, full_name__in=names)
    )


def ingest_completed_run(
    *, full_name: str, installation_id: int | None, default_branch: str, run: dict[str, Any]
) -> dict[str, Any]:
    """A ``workflow_run completed`` delivery: queue the run's attempts for import.

    A repository the App was installed on without our hearing of it, or one
    whose installation we lost, is registered (and backfilled) from what the
    delivery says. Raises ValueError for a repository name that is not owner/name.
    """
    repository = Repository.objects.filter(full_name=full_name).first()
    registered = False
    if installation_id is not None and (repository is None or repository.installation_id is None):
        attached = attach_installation_repositories(
            names=[full_name], installation_id=installation_id, default_branch=default_branch
        )
        if not attached["attached"]:
            raise ValueError(f"repository name {full_name!r} is not owner/name")
        registered = repository is None
        repository = Repository.objects.get(full_name=full_name)
    if repository is None:
        return {"ignored": "unknown repository"}
    queued = enqueue_github_run(repository=repository, run=run)
    outcome: dict[str, Any] = {
        "jobs": [job.pk for job, created in queued if created],
        "already_queued": [job.pk for job, created in queued if not created],
    }
    if registered:
        outcome["registered"] = full_name
    return outcome
