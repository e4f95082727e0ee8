import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flakeguard_client import ci
from flakeguard_client.config import (
    ConfigError,
    repository,
    run_metadata,
    server_settings,
)

NOW = datetime(2026, 9, 1, 12, 0, 0, tzinfo=UTC)
NO_FLAGS: dict[str, str | None] = {}

GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_REPOSITORY": "acme/shop",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_SHA": "a" * 40,
    "GITHUB_REF_NAME": "main",
    "GITHUB_EVENT_NAME": "push",
    "GITHUB_WORKFLOW": "CI",
    "GITHUB_JOB": "tests",
}


def test_no_ci_detects_nothing() -> None:
    assert ci.detect({"HOME": "/root", "CI": "true"}) == ci.Detected()


def test_github_actions_push() -> None:
    assert ci.detect(GITHUB) == ci.Detected(
        provider="GitHub Actions",
        repo="acme/shop",
        run_id="9876543210",
        run_attempt="2",
        sha="a" * 40,
        branch="main",
        event="push",
        workflow="CI",
        job="tests",
    )


def test_github_actions_pull_request_uses_head_branch_and_head_commit(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"sha": "b" * 40}}}))
    env = GITHUB | {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_REF_NAME": "42/merge",
        "GITHUB_HEAD_REF": "feature/login",
        "GITHUB_EVENT_PATH": str(event),
    }
    detected = ci.detect(env)
    assert (detected.branch, detected.sha, detected.event) == (
        "feature/login",
        "b" * 40,
        "pull_request",
    )


def test_github_actions_pull_request_without_payload_keeps_github_sha() -> None:
    env = GITHUB | {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_HEAD_REF": "fix",
        "GITHUB_EVENT_PATH": "/nonexistent/event.json",
    }
    assert ci.detect(env).sha == "a" * 40


def test_gitlab_ci_merge_request() -> None:
    env = {
        "GITLAB_CI": "true",
        "CI_PIPELINE_ID": "1049861383",
        "CI_JOB_ID": "7788990011",
        "CI_COMMIT_SHA": "c" * 40,
        "CI_COMMIT_REF_NAME": "feature",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_PROJECT_PATH": "acme/platform/shop",
        "CI_JOB_NAME": "test: [py3.12]",
    }
    assert ci.detect(env) == ci.Detected(
        provider="GitLab CI",
        repo="acme/platform/shop",
        run_id="7788990011",
        run_attempt="1",
        sha="c" * 40,
        branch="feature",
        event="pull_request",
        workflow=None,
        job="test: [py3.12]",
    )


def test_gitlab_ci_push_keeps_pipeline_source() -> None:
    env = {
        "GITLAB_CI": "true",
        "CI_JOB_ID": "5",
        "CI_PIPELINE_SOURCE": "schedule",
        "CI_COMMIT_REF_NAME": "main",
    }
    detected = ci.detect(env)
    assert (detected.event, detected.branch) == ("schedule", "main")


def test_jenkins_multibranch_pull_request() -> None:
    env = {
        "JENKINS_URL": "https://jenkins.example/",
        "BUILD_NUMBER": "57",
        "GIT_COMMIT": "d" * 40,
        "GIT_BRANCH": "PR-12",
        "BRANCH_NAME": "PR-12",
        "CHANGE_ID": "12",
        "CHANGE_BRANCH": "feature/cart",
        "JOB_NAME": "shop/PR-12",
        "GIT_URL": "git@github.com:acme/shop.git",
    }
    assert ci.detect(env) == ci.Detected(
        provider="Jenkins",
        repo="acme/shop",
        run_id="57",
        run_attempt="1",
        sha="d" * 40,
        branch="feature/cart",
        event="pull_request",
        job="shop/PR-12",
    )


def test_jenkins_freestyle_strips_the_remote_from_git_branch() -> None:
    env = {"JENKINS_URL": "x", "BUILD_NUMBER": "3", "GIT_BRANCH": "origin/release/2.0"}
    detected = ci.detect(env)
    assert (detected.branch, detected.event, detected.repo) == ("release/2.0", "push", None)


def test_buildkite_retry_of_a_pull_request() -> None:
    env = {
        "BUILDKITE": "true",
        "BUILDKITE_BUILD_NUMBER": "59034",
        "BUILDKITE_RETRY_COUNT": "2",
        "BUILDKITE_COMMIT": "e" * 40,
        "BUILDKITE_BRANCH": "fix-cart",
        "BUILDKITE_PULL_REQUEST": "311",
        "BUILDKITE_PIPELINE_SLUG": "shop-ci",
        "BUILDKITE_LABEL": ":pytest: tests (3.12)",
        "BUILDKITE_REPO": "https://github.com/acme/shop.git",
    }
    assert ci.detect(env) == ci.Detected(
        provider="Buildkite",
        repo="acme/shop",
        run_id="59034",
        run_attempt="3",
        sha="e" * 40,
        branch="fix-cart",
        event="pull_request",
        workflow="shop-ci",
        job=":pytest: tests (3.12)",
    )


def test_buildkite_push_when_pull_request_is_false() -> None:
    env = {"BUILDKITE": "true", "BUILDKITE_PULL_REQUEST": "false", "BUILDKITE_RETRY_COUNT": "0"}
    detected = ci.detect(env)
    assert (detected.event, detected.run_attempt) == ("push", "1")


def test_circleci_uses_the_integer_build_number_not_the_workflow_uuid() -> None:
    env = {
        "CIRCLECI": "true",
        "CIRCLE_BUILD_NUM": "4411",
        "CIRCLE_WORKFLOW_ID": "6a2c1f3e-5a5b-4f0e-9a53-1b2c3d4e5f60",
        "CIRCLE_SHA1": "f" * 40,
        "CIRCLE_BRANCH": "main",
        "CIRCLE_PROJECT_USERNAME": "acme",
        "CIRCLE_PROJECT_REPONAME": "shop",
        "CIRCLE_JOB": "test",
    }
    assert ci.detect(env) == ci.Detected(
        provider="CircleCI",
        repo="acme/shop",
        run_id="4411",
        run_attempt="1",
        sha="f" * 40,
        branch="main",
        event="push",
        job="test",
    )
    pr = env | {"CIRCLE_PULL_REQUEST": "https://github.com/acme/shop/pull/9"}
    assert ci.detect(pr).event == "pull_request"


@pytest.mark.parametrize(
    ("url", "repo"),
    [
        ("https://github.com/acme/shop.git", "acme/shop"),
        ("https://github.com/acme/shop", "acme/shop"),
        ("https://user:token@gitlab.example:8443/group/sub/shop.git", "group/sub/shop"),
        ("git@github.com:acme/shop.git", "acme/shop"),
        ("ssh://git@github.com/acme/shop.git", "acme/shop"),
        ("/srv/git/shop.git", None),
        ("", None),
    ],
)
def test_repo_from_git_url(url: str, repo: str | None) -> None:
    assert ci.repo_from_git_url(url) == repo


def test_metadata_from_github_actions() -> None:
    metadata = run_metadata(NO_FLAGS, GITHUB, started_at=NOW)
    assert metadata.form_fields() == [
        ("repo", "acme/shop"),
        ("run_id", "9876543210"),
        ("run_attempt", "2"),
        ("sha", "a" * 40),
        ("branch", "main"),
        ("event", "push"),
        ("started_at", "2026-09-01T12:00:00+00:00"),
        ("workflow", "CI"),
        ("job", "tests"),
    ]


def test_flags_override_the_environment() -> None:
    flags = {
        "repo": "other/repo",
        "run_id": "1",
        "run_attempt": "3",
        "sha": "abc",
        "branch": "dev",
        "event": "schedule",
        "workflow": "nightly",
        "job": "linux",
        "started_at": "2026-01-02T03:04:05Z",
    }
    env = GITHUB | {"FLAKEGUARD_REPO": "env/repo"}
    metadata = run_metadata(flags, env, started_at=NOW)
    assert dict(metadata.form_fields()) == {
        "repo": "other/repo",
        "run_id": "1",
        "run_attempt": "3",
        "sha": "abc",
        "branch": "dev",
        "event": "schedule",
        "started_at": "2026-01-02T03:04:05+00:00",
        "workflow": "nightly",
        "job": "linux",
    }


def test_flakeguard_repo_overrides_the_ci_repository() -> None:
    assert repository(GITHUB | {"FLAKEGUARD_REPO": "mirror/shop"}) == "mirror/shop"


def test_defaults_outside_ci() -> None:
    metadata = run_metadata({"repo": "a/b", "run_id": "7", "sha": "abc"}, {}, started_at=NOW)
    assert (metadata.run_attempt, metadata.branch, metadata.event, metadata.workflow) == (
        1,
        "",
        "push",
        "",
    )
    assert ("workflow", "") not in metadata.form_fields()


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({}, {}, "--repo OWNER/NAME or set FLAKEGUARD_REPO"),
        ({"repo": "a/b"}, {}, "no run id: pass --run-id"),
        ({"repo": "a/b", "run_id": "7"}, {}, "no commit: pass --sha"),
        ({"repo": "a/b", "run_id": "x7", "sha": "s"}, {}, "positive integer (--run-id)"),
        ({"repo": "a/b", "run_id": "7", "sha": "s", "run_attempt": "0"}, {}, "--run-attempt"),
        ({"repo": "shop", "run_id": "7", "sha": "s"}, {}, "OWNER/NAME, not 'shop'"),
        (
            {"repo": "a/b", "run_id": "7", "sha": "s", "started_at": "2026-09-01 12:00"},
            {},
            "with a timezone",
        ),
        (
            {},
            {"JENKINS_URL": "x", "GIT_URL": "git@h:a/b.git"},
            "no run id: pass --run-id (not found in the Jenkins environment)",
        ),
    ],
)
def test_missing_or_bad_metadata_names_what_to_set(
    flags: dict[str, str | None], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        run_metadata(flags, env, started_at=NOW)
    assert message in str(info.value)


def test_server_settings() -> None:
    settings = server_settings(
        {"FLAKEGUARD_URL": "https://fg.example/", "FLAKEGUARD_TOKEN": "t"}, timeout="2.5"
    )
    assert (settings.url, settings.token, settings.timeout) == ("https://fg.example", "t", 2.5)
    assert server_settings({"FLAKEGUARD_TIMEOUT": "4"}, url="http://h", token="t").timeout == 4
    assert server_settings({}, url="http://h", token="t").timeout == 10


@pytest.mark.parametrize(
    ("env", "kwargs", "message"),
    [
        ({}, {}, "pass --url or set FLAKEGUARD_URL"),
        ({"FLAKEGUARD_URL": "fg.example"}, {}, "must start with http:// or https://"),
        ({"FLAKEGUARD_URL": "http://h"}, {}, "pass --token or set FLAKEGUARD_TOKEN"),
        (
            {"FLAKEGUARD_URL": "http://h", "FLAKEGUARD_TOKEN": "t"},
            {"timeout": "0"},
            "positive number of seconds",
        ),
        (
            {"FLAKEGUARD_URL": "http://h", "FLAKEGUARD_TOKEN": "t", "FLAKEGUARD_TIMEOUT": "soon"},
            {},
            "positive number of seconds",
        ),
    ],
)
def test_bad_server_settings(env: dict[str, str], kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        server_settings(env, **kwargs)
    assert message in str(info.value)
