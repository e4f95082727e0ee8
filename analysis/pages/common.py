"""What every dashboard page shares: the repository lookup, scoped to the user."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from ingest.access import Action, access_for
from ingest.models import Repository


def readable_repository(request: HttpRequest, full_name: str) -> Repository:
    """The repository, if the user may read it; a 404 otherwise, as for one that does not exist."""
    return get_object_or_404(access_for(request).repositories(Action.READ), full_name=full_name)


def github_run_url(repository: Repository, run_id: int, attempt: int) -> str:
    return f"https://github.com/{repository.full_name}/actions/runs/{run_id}/attempts/{attempt}"


def github_commit_url(repository: Repository, sha: str) -> str:
    return f"https://github.com/{repository.full_name}/commit/{sha}"
