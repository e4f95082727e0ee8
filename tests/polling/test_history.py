"""Following a repository brings its history; runs are followed until they complete, whatever their age.

Against the fake GitHub server, with the real PyGithub client, at the default
settings (30 days of backfill, a 3-day poll window) unless a test says otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from analysis.models import TestScore
from ingest.models import Repository, WorkflowRun
from jobs.models import Job, JobKind, JobState
from polling.backfill import backfill_start
from polling.clients import client_for
from polling.models import Artifact, ArtifactState, FollowedRun, GitHubSettings
from polling.repositories import add_repository
from tests.github_fake import FakeGitHub, junit_zip
from tests.ingest.junit_samples import pytest_report

REPO = "acme/shop"
NOW = datetime.now(UTC).replace(microsecond=0)
WEBHOOK_SECRET = "history-webhook-secret"


@pytest.fixture
def github(fake_github: FakeGitHub, settings) -> FakeGitHub:
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded default: jobs run in this process
    settings.GITHUB_WEBHOOK_SECRET = [WEBHOOK_SECRET]
    fake_github.repo(REPO)
    return fake_github


def report(pay: str) -> bytes:
    return junit_zip(
        {
            "junit.xml": pytest_report(
                [("tests.test_cart", "test_add", "passed"), ("tests.test_cart", "test_pay", pay)]
            )
        }
    )


def add_attempt(
    github: FakeGitHub,
    started: datetime,
    *,
    pay: str = "passed",
    run_id: int | None = None,
    attempt: int = 1,
    status: str = "completed",
    sha: str | None = None,
) -> dict[str, Any]:
    """A run attempt with its JUnit artifact (and one that is not JUnit), as GitHub keeps them."""
    run = github.add_run(
        REPO, run_id=run_id, attempt=attempt, started_at=started, status=status, sha=sha
    )
    if status == "completed":
        github.add_artifact(
            REPO,
            run["id"],
            f"junit-{attempt}",
            report(pay),
            created_at=started + timedelta(minutes=3),
        )
        github.add_artifact(REPO, run["id"], f"coverage-{attempt}", b"PK", created_at=started)
    return run


def downloads(github: FakeGitHub) -> Counter:
    return Counter(r.path for r in github.requests_to(r"/actions/artifacts/\d+/zip$"))


def eighteen_days_of_runs(github: FakeGitHub) -> int:
    """Two runs a day for 18 days; every third one failed test_pay and was re-run green.

    Returns how many run attempts GitHub holds.
    """
    attempts = 0
    for n in range(36):
        started = NOW - timedelta(days=18) + timedelta(hours=12 * n)
        flaked = n % 3 == 0
        run = add_attempt(github, started, pay="failed" if flaked else "passed")
        attempts += 1
        if flaked:
            add_attempt(github, started + timedelta(minutes=30), run_id=run["id"], attempt=2)
            attempts += 1
    return attempts


@pytest.mark.django_db(transaction=True)
def test_add_repo_brings_18_days_of_history_and_check_runs_follow_only_new_commits(
    github: FakeGitHub,
) -> None:
    attempts = eighteen_days_of_runs(github)

    call_command("add_repo", REPO, "--artifact-pattern", "junit-*", stdout=io.StringIO())
    out = io.StringIO()
    call_command("poll_github", "--once", stdout=out)

    # Every attempt of the last 18 days is in, each JUnit artifact fetched once, no other.
    assert WorkflowRun.objects.count() == attempts == 48
    assert set(downloads(github).values()) == {1}
    assert len(downloads(github)) == attempts
    assert not Artifact.objects.exclude(state=ArtifactState.INGESTED).exists()
    # The history is scored the same day: the re-run flake is found.
    assert TestScore.objects.get(test__name="test_pay").verdict == "flaky"
    assert TestScore.objects.get(test__name="test_add").verdict == "stable"
    # Nobody looks at weeks-old commits: no check run for any of them.
    assert github.repo(REPO).check_runs == {}
    backfill = Job.objects.get(kind=JobKind.BACKFILL_REPO)
    assert backfill.state == JobState.SUCCEEDED
    assert backfill.result["run_attempts"] == attempts

    # Two commits whose runs complete now get one check run each, and only they.
    fresh = [
        add_attempt(github, NOW + timedelta(minutes=1), pay="failed", sha="a" * 40),
        add_attempt(github, NOW + timedelta(minutes=2), pay="failed", sha="b" * 40),
    ]
    call_command("poll_github", "--once", stdout=io.StringIO())
    call_command("poll_github", "--once", stdout=io.StringIO())

    checks = list(github.repo(REPO).check_runs.values())
    assert sorted(c["head_sha"] for c in checks) == sorted(run["head_sha"] for run in fresh)
    assert all("test_pay" in c["output"]["summary"] for c in checks)
    assert len(github.requests_to(r"/check-runs$", "POST")) == 2
    assert WorkflowRun.objects.count() == attempts + 2
    assert set(downloads(github).values()) == {1}


@pytest.mark.django_db(transaction=True)
def test_add_repo_without_backfill_imports_nothing(github: FakeGitHub) -> None:
    eighteen_days_of_runs(github)

    call_command("add_repo", REPO, "--no-backfill", stdout=io.StringIO())

    assert not Job.objects.filter(kind=JobKind.BACKFILL_REPO).exists()
    assert WorkflowRun.objects.count() == 0
    assert github.requests == []


@pytest.mark.django_db(transaction=True)
def test_a_repository_added_again_gets_no_second_backfill(github: FakeGitHub) -> None:
    add_attempt(github, NOW - timedelta(days=2))

    call_command("add_repo", REPO, stdout=io.StringIO())
    call_command("add_repo", REPO, "--poll-interval", "60", stdout=io.StringIO())

    assert Job.objects.filter(kind=JobKind.BACKFILL_REPO).count() == 1
    assert GitHubSettings.objects.get().poll_interval_seconds == 60
    assert WorkflowRun.objects.count() == 1


@pytest.mark.django_db
def test_the_backfill_never_reaches_past_the_repositorys_artifact_retention(
    github: FakeGitHub,
) -> None:
    repository = Repository.objects.create(full_name=REPO)
    client = client_for(installation_id=None)

    github.repo(REPO).retention_days = 7
    assert backfill_start(client, repository, days=30, now=NOW) == NOW - timedelta(days=7)
    assert backfill_start(client, repository, days=5, now=NOW) == NOW - timedelta(days=5)
    # Credentials that may not read the Actions settings: GitHub's default of 90 days.
    github.repo(REPO).retention_days = None
    assert backfill_start(client, repository, days=120, now=NOW) == NOW - timedelta(days=90)
    assert backfill_start(client, repository, days=30, now=NOW) == NOW - timedelta(days=30)


@pytest.mark.django_db(transaction=True)
def test_a_run_seen_in_progress_by_the_backfill_is_followed_until_it_completes(
    github: FakeGitHub, settings
) -> None:
    nightly = add_attempt(github, NOW - timedelta(days=20), status="in_progress")

    call_command("add_repo", REPO, "--artifact-pattern", "junit-*", stdout=io.StringIO())
    [followed] = FollowedRun.objects.all()
    assert (followed.run_id, followed.status) == (nightly["id"], "in_progress")

    # Still going: asked again, conditionally, which costs no rate limit.
    call_command("poll_github", "--once", stdout=io.StringIO())
    call_command("poll_github", "--once", stdout=io.StringIO())
    asked = github.requests_to(rf"/actions/runs/{nightly['id']}$")
    assert [r.status for r in asked] == [200, 304]
    assert WorkflowRun.objects.count() == 0

    # It completes 20 days after it started, far outside the 3-day poll window.
    add_attempt(github, NOW - timedelta(days=20), run_id=nightly["id"], pay="failed")
    call_command("poll_github", "--once", stdout=io.StringIO())

    run = WorkflowRun.objects.get()
    assert (run.run_id, run.run_attempt, run.results_count) == (nightly["id"], 1, 2)
    assert not FollowedRun.objects.exists()
    call_command("poll_github", "--once", stdout=io.StringIO())
    # Two follow-ups, the one that saw it complete, and the import's own look at
    # its current attempt; no more asking once it is stored.
    assert len(github.requests_to(rf"/actions/runs/{nightly['id']}$")) == 4


@pytest.mark.django_db(transaction=True)
def test_a_run_seen_in_progress_by_a_poll_is_followed_after_it_leaves_the_window(
    github: FakeGitHub, settings
) -> None:
    add_repository(full_name=REPO, backfill=False)
    waiting = add_attempt(github, NOW - timedelta(days=2), status="waiting")
    call_command("poll_github", "--once", stdout=io.StringIO())
    assert FollowedRun.objects.get().status == "waiting"

    settings.FLAKEGUARD_POLL_WINDOW_DAYS = 1  # days go by: the run leaves the window
    GitHubSettings.objects.update(runs_etag="")
    add_attempt(github, NOW - timedelta(days=2), run_id=waiting["id"])
    call_command("poll_github", "--once", stdout=io.StringIO())

    assert WorkflowRun.objects.get().run_id == waiting["id"]
    assert not FollowedRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_followed_run_whose_completion_a_webhook_announced_is_not_asked_after(
    github: FakeGitHub,
) -> None:
    add_repository(full_name=REPO, backfill=False)
    going = add_attempt(github, NOW - timedelta(hours=1), status="in_progress")
    call_command("poll_github", "--once", stdout=io.StringIO())
    assert FollowedRun.objects.exists()

    done = add_attempt(github, NOW - timedelta(hours=1), run_id=going["id"])
    deliver_workflow_run(done)
    assert WorkflowRun.objects.count() == 1
    github.requests.clear()
    GitHubSettings.objects.update(runs_etag="")
    github.repo(REPO).runs.pop(going["id"])  # out of the listing: only a question would find it

    call_command("poll_github", "--once", stdout=io.StringIO())

    assert not FollowedRun.objects.exists()
    assert github.requests_to(rf"/actions/runs/{going['id']}$") == []


@pytest.mark.django_db(transaction=True)
def test_a_webhook_re_run_of_a_month_old_run_is_ingested(github: FakeGitHub) -> None:
    add_repository(full_name=REPO, backfill=False)
    started = NOW - timedelta(days=40)
    old = add_attempt(github, started, pay="failed")
    for artifact in github.repo(REPO).artifacts[old["id"]]:
        artifact["expired"] = True  # GitHub let the first attempt's artifacts go
    rerun = add_attempt(github, NOW - timedelta(minutes=20), run_id=old["id"], attempt=2)

    response = deliver_workflow_run(rerun)

    assert response.status_code == 200, response.content
    runs = WorkflowRun.objects.order_by("run_attempt")
    assert [(r.run_id, r.run_attempt) for r in runs] == [(old["id"], 1), (old["id"], 2)]
    assert [r.results_count for r in runs] == [0, 2]
    assert Artifact.objects.filter(state=ArtifactState.EXPIRED).count() == 2


@pytest.mark.django_db
def test_an_installation_backfills_each_repository_it_brings(github: FakeGitHub, settings) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.REDIS_URL = ""
    add_repository(full_name="acme/known", backfill=False)
    payload = {
        "action": "created",
        "installation": {"id": 77},
        "repositories": [{"full_name": "acme/new"}, {"full_name": "acme/known"}],
    }

    response = deliver(payload, event="installation")

    assert response.status_code == 200, response.content
    backfills = Job.objects.filter(kind=JobKind.BACKFILL_REPO)
    assert [job.payload["repository_id"] for job in backfills] == [
        Repository.objects.get(full_name="acme/new").pk
    ]
    assert response.json()["backfill_jobs"] == [backfills[0].pk]
    assert backfills[0].payload["days"] == 30


def deliver_workflow_run(run: dict[str, Any]):
    return deliver(
        {"action": "completed", "workflow_run": run, "repository": {"full_name": REPO}},
        event="workflow_run",
    )


def deliver(payload: dict[str, Any], *, event: str):
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return Client().post(
        "/webhooks/github",
        data=body,
        content_type="application/json",
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
        },
    )


@pytest.mark.django_db(transaction=True)
def test_an_attempt_imported_after_its_re_run_takes_only_its_own_artifacts(
    github: FakeGitHub,
) -> None:
    from ingest.services import ingest_run_payload
    from polling.discovery import run_info_from_github

    add_repository(full_name=REPO, backfill=False)
    first = add_attempt(github, NOW - timedelta(hours=2), pay="failed")
    info = run_info_from_github(REPO, dict(first), attempt=1)  # as its webhook said: attempt 1
    # Its import is delayed (an outage) until after the run was re-run.
    add_attempt(github, NOW - timedelta(hours=1), run_id=first["id"], attempt=2)

    result = ingest_run_payload({"run": info.to_json(), "source": "github", "latest_attempt": 1})

    assert result["imported"] and result["results_stored"] == 2  # not attempt 2's as well
    run = WorkflowRun.objects.get(run_attempt=1)
    assert run.results_count == 2
