"""Run metadata read from the environment variables each CI service documents.

Pure: everything comes from the mapping passed in (and, on GitHub Actions, the
event payload file that mapping names). Values a CI does not provide are left
as None so that flags and FLAKEGUARD_* settings can fill them in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Detected:
    """What one CI says about the current build; every field may be missing."""

    provider: str | None = None
    repo: str | None = None
    run_id: str | None = None
    run_attempt: str | None = None
    sha: str | None = None
    branch: str | None = None
    event: str | None = None
    workflow: str | None = None
    job: str | None = None


def detect(env: Mapping[str, str]) -> Detected:
    """Metadata of the CI this process runs in, or an empty Detected outside CI."""
    if env.get("GITHUB_ACTIONS") == "true":
        return _github(env)
    if env.get("GITLAB_CI") == "true":
        return _gitlab(env)
    if env.get("BUILDKITE") == "true":
        return _buildkite(env)
    if env.get("CIRCLECI") == "true":
        return _circleci(env)
    # Jenkins sets no single marker variable; JENKINS_URL is set on every build.
    if env.get("JENKINS_URL") or env.get("JENKINS_HOME"):
        return _jenkins(env)
    return Detected()


def _get(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def _github(env: Mapping[str, str]) -> Detected:
    event = _get(env, "GITHUB_EVENT_NAME")
    is_pr = event in ("pull_request", "pull_request_target")
    sha = _get(env, "GITHUB_SHA")
    if is_pr:
        # GITHUB_SHA is the temporary merge commit on pull requests; the run
        # itself (and so the server's record of it) is about the head commit.
        sha = _github_pr_head_sha(env.get("GITHUB_EVENT_PATH", "")) or sha
    branch = _get(env, "GITHUB_HEAD_REF") if is_pr else None
    return Detected(
        provider="GitHub Actions",
        repo=_get(env, "GITHUB_REPOSITORY"),
        run_id=_get(env, "GITHUB_RUN_ID"),
        run_attempt=_get(env, "GITHUB_RUN_ATTEMPT"),
        sha=sha,
        branch=branch or _get(env, "GITHUB_REF_NAME"),
        event=event,
        workflow=_get(env, "GITHUB_WORKFLOW"),
        job=_get(env, "GITHUB_JOB"),
    )


def _github_pr_head_sha(event_path: str) -> str | None:
    if not event_path:
        return None
    try:
        with open(event_path, encoding="utf-8") as f:
            payload = json.load(f)
        sha = payload["pull_request"]["head"]["sha"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sha if isinstance(sha, str) and sha else None


_GITLAB_EVENTS = {
    "merge_request_event": "pull_request",
    "external_pull_request_event": "pull_request",
}


def _gitlab(env: Mapping[str, str]) -> Detected:
    source = _get(env, "CI_PIPELINE_SOURCE")
    return Detected(
        provider="GitLab CI",
        repo=_get(env, "CI_PROJECT_PATH"),
        # The pipeline id is shared by every job of the pipeline and by retried
        # jobs, and the server keeps one upload per (repo, run id, attempt):
        # the job id is the integer that is new for each job and each retry.
        run_id=_get(env, "CI_JOB_ID", "CI_PIPELINE_ID"),
        run_attempt="1",
        sha=_get(env, "CI_COMMIT_SHA"),
        branch=_get(env, "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "CI_COMMIT_REF_NAME"),
        event=_GITLAB_EVENTS.get(source, source) if source else None,
        workflow=_get(env, "CI_PIPELINE_NAME"),
        job=_get(env, "CI_JOB_NAME"),
    )


def _jenkins(env: Mapping[str, str]) -> Detected:
    branch = _get(env, "CHANGE_BRANCH", "BRANCH_NAME")
    if branch is None:
        git_branch = _get(env, "GIT_BRANCH")
        if git_branch:
            # The git plugin reports the remote-tracking name (origin/main).
            branch = re.sub(r"^(refs/heads/|refs/remotes/[^/]+/|origin/)", "", git_branch)
    return Detected(
        provider="Jenkins",
        repo=repo_from_git_url(_get(env, "GIT_URL")),
        run_id=_get(env, "BUILD_NUMBER"),
        run_attempt="1",
        sha=_get(env, "GIT_COMMIT"),
        branch=branch,
        event="pull_request" if _get(env, "CHANGE_ID") else "push",
        job=_get(env, "JOB_NAME"),
    )


def _buildkite(env: Mapping[str, str]) -> Detected:
    retries = _get(env, "BUILDKITE_RETRY_COUNT")
    attempt = str(int(retries) + 1) if retries and retries.isdigit() else "1"
    pull_request = _get(env, "BUILDKITE_PULL_REQUEST")
    is_pr = pull_request not in (None, "false")
    source = _get(env, "BUILDKITE_SOURCE")
    event = "pull_request" if is_pr else ("schedule" if source == "schedule" else "push")
    return Detected(
        provider="Buildkite",
        repo=repo_from_git_url(_get(env, "BUILDKITE_REPO")),
        run_id=_get(env, "BUILDKITE_BUILD_NUMBER"),
        run_attempt=attempt,
        sha=_get(env, "BUILDKITE_COMMIT"),
        branch=_get(env, "BUILDKITE_BRANCH"),
        event=event,
        workflow=_get(env, "BUILDKITE_PIPELINE_SLUG"),
        job=_get(env, "BUILDKITE_LABEL", "BUILDKITE_STEP_KEY"),
    )


def _circleci(env: Mapping[str, str]) -> Detected:
    user, name = _get(env, "CIRCLE_PROJECT_USERNAME"), _get(env, "CIRCLE_PROJECT_REPONAME")
    return Detected(
        provider="CircleCI",
        repo=f"{user}/{name}" if user and name else None,
        # CIRCLE_WORKFLOW_ID is a UUID and the server wants an integer; the
        # build number is an integer, unique within the project, and new for
        # each job and each rerun.
        run_id=_get(env, "CIRCLE_BUILD_NUM"),
        run_attempt="1",
        sha=_get(env, "CIRCLE_SHA1"),
        branch=_get(env, "CIRCLE_BRANCH"),
        event="pull_request" if _get(env, "CIRCLE_PULL_REQUEST") else "push",
        job=_get(env, "CIRCLE_JOB"),
    )


_GIT_URL = re.compile(
    r"""^(?:[a-z+]+://(?:[^@/]+@)?[^/:]+(?::\d+)?/   # https://host[:port]/, ssh://git@host/
        | [^@/]+@[^:/]+:                             # git@host:
        )(?P<path>.+?)(?:\.git)?/?$""",
    re.VERBOSE,
)


def repo_from_git_url(url: str | None) -> str | None:
    """``owner/name`` from a clone URL (https, ssh or scp-like), else None."""
    if not url:
        return None
    match = _GIT_URL.match(url.strip())
    if not match or "/" not in match["path"]:
        return None
    return match["path"]
