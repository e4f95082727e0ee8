"""The GitHub client (real PyGithub) against the fake GitHub server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from polling.github import (
    GitHubClient,
    GitHubConfig,
    Gone,
    RateLimited,
    Unavailable,
    artifact_matches,
    verify_webhook_signature,
)
from tests.github_fake import FakeGitHub, junit_zip

REPO = "acme/shop"
TOKEN = "ghp_test_token"


@pytest.fixture
def github():
    with FakeGitHub() as fake:
        fake.add_token(TOKEN)
        fake.repo(REPO)
        yield fake


def client_for(github: FakeGitHub, **overrides) -> GitHubClient:
    config = GitHubConfig(api_url=github.api_url, token=TOKEN, timeout=2, retries=2, **overrides)
    return GitHubClient(config)


def test_completed_runs_follow_pagination_and_a_304_costs_nothing(github: FakeGitHub) -> None:
    for n in range(230):
        github.add_run(REPO, started_at=datetime(2026, 9, 1, tzinfo=UTC) + timedelta(minutes=n))
    github.add_run(REPO, status="in_progress")
    client = client_for(github)

    runs, etag, not_modified = client.workflow_runs(REPO, status="completed")
    assert len(runs) == 230 and not not_modified and etag
    assert len(github.requests_to(r"/actions/runs$")) == 3  # 100 + 100 + 30

    again, same_etag, not_modified = client.workflow_runs(REPO, status="completed", etag=etag)
    assert again == [] and not_modified and same_etag == etag
    assert github.requests_to(r"/actions/runs$")[-1].status == 304
    assert github.remaining[TOKEN] == 5000 - 3


def test_server_errors_are_retried_and_persistent_ones_reported(github: FakeGitHub) -> None:
    github.add_run(REPO)
    github.fail_next(r"/actions/runs$", 502, times=1)
    runs, _, _ = client_for(github).workflow_runs(REPO)
    assert len(runs) == 1
    assert [r.status for r in github.requests_to(r"/actions/runs$")] == [502, 200]

    github.fail_next(r"/actions/runs$", 503, times=10)
    with pytest.raises(Unavailable):
        client_for(github).workflow_runs(REPO)


def test_timeouts_are_retried(github: FakeGitHub) -> None:
    github.add_run(REPO)
    github.delay_next(r"/actions/runs$", 3.0, times=1)
    runs, _, _ = client_for(github).workflow_runs(REPO)
    assert len(runs) == 1
    assert len(github.requests_to(r"/actions/runs$")) == 2


def test_a_spent_rate_limit_raises_with_its_reset_time(github: FakeGitHub) -> None:
    github.add_run(REPO)
    github.spend_rate_limit(TOKEN, reset_in=600)
    with pytest.raises(RateLimited) as raised:
        client_for(github).workflow_runs(REPO)
    assert raised.value.reset_at == pytest.approx(time.time() + 600, abs=5)


def test_artifacts_are_downloaded_through_the_redirect(github: FakeGitHub, tmp_path: Path) -> None:
    run = github.add_run(REPO)
    content = junit_zip({"junit.xml": b"<testsuite/>"})
    artifact = github.add_artifact(REPO, run["id"], "junit-linux", content)
    github.add_artifact(REPO, run["id"], "coverage", b"x" * 10)
    client = client_for(github)

    listed = client.run_artifacts(REPO, run["id"])
    size = client.download_artifact(REPO, artifact["id"], tmp_path / "a.zip", max_bytes=10_000)

    assert [a.name for a in listed] == ["junit-linux", "coverage"]
    assert size == len(content) and (tmp_path / "a.zip").read_bytes() == content
    blob = [r for r in github.requests if r.path.startswith("/blobs/")]
    assert len(blob) == 1 and "Authorization" not in blob[0].headers


def test_a_download_broken_off_half_way_is_a_transient_failure(
    github: FakeGitHub, tmp_path: Path
) -> None:
    run = github.add_run(REPO)
    content = junit_zip(
        {"junit.xml": b"<testsuite>" + b"<testcase name='t'/>" * 5000 + b"</testsuite>"}
    )
    artifact = github.add_artifact(REPO, run["id"], "junit-linux", content)
    github.truncate_next(r"^/blobs/")
    client = client_for(github)

    with pytest.raises(Unavailable, match="download"):
        client.download_artifact(REPO, artifact["id"], tmp_path / "a.zip", max_bytes=10_000_000)
    assert not (tmp_path / "a.zip").exists()  # no half file left behind
    size = client.download_artifact(REPO, artifact["id"], tmp_path / "a.zip", max_bytes=10_000_000)
    assert size == len(content) and (tmp_path / "a.zip").read_bytes() == content


def test_expired_and_oversized_artifacts_are_refused(github: FakeGitHub, tmp_path: Path) -> None:
    run = github.add_run(REPO)
    expired = github.add_artifact(REPO, run["id"], "junit-old", b"zip", expired=True)
    big = github.add_artifact(REPO, run["id"], "junit-big", b"z" * 5000)
    client = client_for(github)

    with pytest.raises(Gone):
        client.download_artifact(REPO, expired["id"], tmp_path / "old.zip", max_bytes=10_000)
    with pytest.raises(Exception, match="too large"):
        client.download_artifact(REPO, big["id"], tmp_path / "big.zip", max_bytes=1000)
    assert not (tmp_path / "big.zip").exists()


def test_check_runs_are_created_and_updated(github: FakeGitHub) -> None:
    client = client_for(github)
    created = client.create_check_run(
        REPO, {"name": "FlakeGuard", "head_sha": "a" * 40, "status": "completed",
               "conclusion": "neutral", "output": {"title": "t", "summary": "s"}}
    )  # fmt: skip
    updated = client.update_check_run(REPO, created["id"], {"conclusion": "failure"})
    assert updated["conclusion"] == "failure"
    assert list(github.repo(REPO).check_runs) == [created["id"]]


def test_app_installation_token_is_fetched_and_renewed_before_it_expires(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with FakeGitHub(app_id="4242", app_public_key=public) as github:
        github.repo(REPO)
        github.add_run(REPO)
        github.token_lifetime = timedelta(seconds=22)  # renewed 20 s before it runs out
        client = GitHubClient(
            GitHubConfig(api_url=github.api_url, app_id="4242", private_key=private),
            installation_id=77,
        )
        client.workflow_runs(REPO)
        client.workflow_runs(REPO)
        assert len(github.requests_to(r"/access_tokens$", "POST")) == 1
        time.sleep(2.5)
        client.workflow_runs(REPO)
        assert len(github.requests_to(r"/access_tokens$", "POST")) == 2


def test_artifact_names_match_shell_patterns() -> None:
    assert artifact_matches("junit-linux", "junit-*")
    assert not artifact_matches("coverage", "junit-*")
    assert artifact_matches("anything", "")


def test_webhook_signatures_are_checked_against_every_secret() -> None:
    import hashlib
    import hmac

    body = b'{"zen": "Keep it logically awesome."}'
    good = "sha256=" + hmac.new(b"new-secret", body, hashlib.sha256).hexdigest()
    assert verify_webhook_signature(body, good, ["old-secret", "new-secret"])
    assert not verify_webhook_signature(body, good, ["old-secret"])
    assert not verify_webhook_signature(body, "sha1=abc", ["new-secret"])
    assert not verify_webhook_signature(body, good, [])


def test_a_secondary_rate_limit_is_waited_out_then_retried(github: FakeGitHub) -> None:
    github.add_run(REPO)
    github.fail_next(r"/actions/runs$", 429, headers={"Retry-After": "1"})
    started = time.monotonic()

    runs, _, _ = client_for(github).workflow_runs(REPO)

    assert len(runs) == 1
    assert time.monotonic() - started >= 1.0
    assert [r.status for r in github.requests_to(r"/actions/runs$")] == [429, 200]


def test_a_long_secondary_rate_limit_is_raised_not_slept_through(github: FakeGitHub) -> None:
    github.fail_next(r"/actions/runs$", 403, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimited) as raised:
        client_for(github).workflow_runs(REPO)
    assert raised.value.reset_at == pytest.approx(time.time() + 3600, abs=60)


def test_workers_share_one_rate_budget_through_redis(github: FakeGitHub, redis_url: str) -> None:
    from polling.budget import RedisRateBudget

    github.add_run(REPO)
    budget = RedisRateBudget(redis_url)
    budget.redis.flushdb()
    first_worker = GitHubClient(
        GitHubConfig(api_url=github.api_url, token=TOKEN, retries=0), budget=budget
    )
    second_worker = GitHubClient(
        GitHubConfig(api_url=github.api_url, token=TOKEN, retries=0),
        budget=RedisRateBudget(redis_url),
    )
    first_worker.workflow_runs(REPO)
    github.spend_rate_limit(TOKEN, reset_in=300)
    with pytest.raises(RateLimited):
        first_worker.workflow_runs(REPO)  # GitHub says the budget is spent
    asked = len(github.requests)

    with pytest.raises(RateLimited) as raised:
        second_worker.workflow_runs(REPO)  # told by Redis, without asking GitHub

    assert len(github.requests) == asked
    assert raised.value.reset_at == pytest.approx(time.time() + 300, abs=10)
