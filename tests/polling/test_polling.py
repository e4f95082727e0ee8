"""Polling, artifact fetching and backfill against the fake GitHub server, with the real PyGithub client."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from ingest.models import Repository, TestResult, WorkflowRun
from jobs.models import Job, JobKind, JobState
from jobs.runner import claim_job, run_job
from polling.backfill import backfill_repository, backfill_repository_job, enqueue_backfill
from polling.discovery import poll_repository, schedule_polls
from polling.models import Artifact, ArtifactState, GitHubSettings
from polling.repositories import add_repository
from tests.conftest import FAKE_GITHUB_TOKEN as TOKEN
from tests.github_fake import FakeGitHub, junit_zip
from tests.ingest.junit_samples import pytest_report

REPO = "acme/shop"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=20)


def report(outcome: str = "passed") -> bytes:
    return junit_zip(
        {
            "reports/junit.xml": pytest_report(
                [
                    ("tests.test_cart", "test_add", "passed"),
                    ("tests.test_cart", "test_pay", outcome),
                ]
            )
        }
    )


@pytest.fixture
def github(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.repo(REPO)
    return fake_github


@pytest.fixture
def eager(settings) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True


def add_run_with_artifacts(
    github: FakeGitHub, minutes: int, *, outcome: str = "passed", **run: object
) -> dict:
    started = T0 + timedelta(minutes=minutes)
    created = github.add_run(REPO, started_at=started, **run)  # type: ignore[arg-type]
    github.add_artifact(
        REPO,
        created["id"],
        "junit-linux",
        report(outcome),
        created_at=started + timedelta(minutes=3),
    )
    github.add_artifact(REPO, created["id"], "coverage", b"not junit", created_at=started)
    return created


def blob_downloads(github: FakeGitHub) -> Counter:
    return Counter(r.path for r in github.requests_to(r"/actions/artifacts/\d+/zip$"))


@pytest.mark.django_db(transaction=True)
def test_polling_discovers_runs_incrementally_and_never_downloads_an_artifact_twice(
    github: FakeGitHub, eager: None
) -> None:
    repository, _, _ = add_repository(full_name=REPO, backfill=False)
    GitHubSettings.objects.filter(repository=repository).update(artifact_pattern="junit-*")
    first = add_run_with_artifacts(github, 0)
    add_run_with_artifacts(github, 30, outcome="failed")

    one = poll_repository(repository=repository)
    again = poll_repository(repository=repository)

    assert one["jobs_queued"] == 2 and not one["not_modified"]
    assert again == {**again, "not_modified": True, "jobs_queued": 0}
    assert github.requests_to(r"/actions/runs$")[-1].status == 304
    assert WorkflowRun.objects.count() == 2
    assert TestResult.objects.count() == 4
    assert set(TestResult.objects.values_list("job", flat=True)) == {"junit-linux"}
    assert not github.requests_to(r"coverage")  # only matching artifacts are fetched

    # A re-run of the first run, and a new run, arrive.
    rerun_start = T0 + timedelta(minutes=90)
    github.add_run(REPO, run_id=first["id"], attempt=2, started_at=rerun_start)
    github.add_artifact(
        REPO, first["id"], "junit-linux", report(), created_at=rerun_start + timedelta(minutes=2)
    )
    add_run_with_artifacts(github, 120)

    third = poll_repository(repository=repository)

    assert third["jobs_queued"] == 2
    attempts = set(WorkflowRun.objects.values_list("run_id", "run_attempt"))
    assert (first["id"], 2) in attempts and len(attempts) == 4
    assert all(count == 1 for count in blob_downloads(github).values())
    assert len(blob_downloads(github)) == 4  # one per junit artifact, each once
    assert set(Artifact.objects.values_list("state", flat=True)) == {ArtifactState.INGESTED}
    rerun = WorkflowRun.objects.get(run_id=first["id"], run_attempt=2)
    assert rerun.started_at == rerun_start and rerun.results_count == 2


@pytest.mark.django_db(transaction=True)
def test_an_exhausted_rate_limit_pauses_polling_until_the_reset(
    github: FakeGitHub, eager: None
) -> None:
    repository, _, _ = add_repository(full_name=REPO, backfill=False)
    add_run_with_artifacts(github, 0)
    github.spend_rate_limit(TOKEN, reset_in=900)

    paused = poll_repository(repository=repository)
    asked = len(github.requests)
    again = poll_repository(repository=repository)

    resume = datetime.fromisoformat(paused["paused_until"])
    assert resume == pytest.approx(
        timezone.now() + timedelta(seconds=900), abs=timedelta(seconds=10)
    )
    assert again["paused_until"] == paused["paused_until"]
    assert len(github.requests) == asked  # the budget said wait: no request went out
    github_settings = GitHubSettings.objects.get(repository=repository)
    assert github_settings.next_poll_at == resume
    assert "rate limit" in github_settings.last_poll_error
    assert schedule_polls() == 0  # not due before the reset
    assert schedule_polls(now=resume + timedelta(seconds=1)) == 1


@pytest.mark.django_db(transaction=True)
def test_server_errors_while_polling_are_retried(github: FakeGitHub, eager: None) -> None:
    repository, _, _ = add_repository(full_name=REPO, backfill=False)
    add_run_with_artifacts(github, 0)
    github.fail_next(r"/actions/runs$", 502, times=1)
    github.fail_next(r"/artifacts$", 500, times=1)

    result = poll_repository(repository=repository)

    assert result["jobs_queued"] == 1
    assert WorkflowRun.objects.get().results_count == 2


@pytest.mark.django_db(transaction=True)
def test_an_expired_artifact_is_recorded_and_not_retried(github: FakeGitHub, eager: None) -> None:
    repository, _, _ = add_repository(full_name=REPO, backfill=False)
    run = github.add_run(REPO, started_at=T0)
    github.add_artifact(REPO, run["id"], "junit-old", report(), created_at=T0, expired=True)

    poll_repository(repository=repository)

    job = Job.objects.get(kind=JobKind.INGEST_RUN)
    assert job.state == JobState.SUCCEEDED and job.attempts == 1
    artifact = Artifact.objects.get()
    assert artifact.state == ArtifactState.EXPIRED
    assert WorkflowRun.objects.get().results_count == 0
    assert not github.requests_to(r"/blobs/")


@pytest.mark.django_db(transaction=True)
def test_artifacts_go_to_the_attempt_during_which_they_were_created(
    github: FakeGitHub, eager: None
) -> None:
    repository, _, _ = add_repository(full_name=REPO, backfill=False)
    run = github.add_run(REPO, started_at=T0)
    github.add_artifact(
        REPO, run["id"], "junit", report("failed"), created_at=T0 + timedelta(minutes=4)
    )
    second = T0 + timedelta(minutes=30)
    github.add_run(REPO, run_id=run["id"], attempt=2, started_at=second)
    github.add_artifact(
        REPO, run["id"], "junit", report("passed"), created_at=second + timedelta(minutes=4)
    )

    poll_repository(repository=repository)  # sees attempt 2 only, queues attempt 1 too

    outcomes = {
        attempt: sorted(
            TestResult.objects.filter(run__run_attempt=attempt).values_list("outcome", flat=True)
        )
        for attempt in (1, 2)
    }
    assert outcomes == {1: ["failed", "passed"], 2: ["passed", "passed"]}


@pytest.mark.django_db(transaction=True)
def test_poll_github_once_carries_the_jobs_through_on_the_embedded_default(
    github: FakeGitHub, eager: None
) -> None:
    out = io.StringIO()
    call_command("add_repo", REPO, "--artifact-pattern", "junit-*", stdout=out)
    add_run_with_artifacts(github, 0, outcome="failed")

    polled = io.StringIO()
    call_command("poll_github", "--repo", REPO, "--once", "--json", stdout=polled)

    summary = json.loads(polled.getvalue())
    assert summary["repositories"][0]["jobs_queued"] == 1
    assert "acme/shop added" in out.getvalue()
    run = WorkflowRun.objects.get()
    assert run.results_count == 2 and run.analyzed_at is not None


@pytest.mark.django_db
def test_schedule_polls_queues_one_job_per_due_repository() -> None:
    due, _, _ = add_repository(full_name="acme/due", backfill=False)
    off, _, _ = add_repository(full_name="acme/off", backfill=False)
    GitHubSettings.objects.filter(repository=off).update(polling_enabled=False)

    assert schedule_polls() == 1
    assert schedule_polls() == 0
    job = Job.objects.get(kind=JobKind.POLL_REPO)
    assert job.payload == {"repository_id": due.pk}


@pytest.mark.django_db(transaction=True)
def test_a_backfill_killed_midway_resumes_and_ends_with_the_rows_of_an_uninterrupted_one(
    github: FakeGitHub,
) -> None:
    # With a broker (no worker here): the job waits in the table for its claim.
    for n in range(6):
        add_run_with_artifacts(github, 40 * n, outcome="failed" if n % 2 else "passed")
    repository, _, _ = add_repository(full_name=REPO, backfill=False)
    since = T0 - timedelta(days=1)

    backfill_repository(repository=repository, since=since)
    uninterrupted = rows()
    Repository.objects.all().delete()
    Job.objects.all().delete()

    github.requests.clear()
    repository, _, _ = add_repository(full_name=REPO, backfill=False)
    job, _ = enqueue_backfill(repository=repository, since=since)
    job = claim_job(job.pk)
    assert job is not None

    def killed_after_three(progress: dict) -> None:
        if progress["done"] == 3:
            raise KeyboardInterrupt("worker killed")

    with pytest.raises(KeyboardInterrupt):
        backfill_repository(
            repository=repository, since=since, job=job, on_progress=killed_after_three
        )
    assert Job.objects.get(pk=job.pk).progress["done"] == 3
    assert WorkflowRun.objects.count() == 3

    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    run_job(job.pk, backfill_repository_job)

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED, job.last_error
    assert job.result["run_attempts"] == 6 and job.result["imported"] == 6
    assert rows() == uninterrupted
    # The resumed attempt carried on from the fourth run: nothing fetched twice.
    assert sorted(blob_downloads(github).values()) == [1] * 12  # junit and coverage, 6 runs
    recompute = Job.objects.get(pk=job.result["recompute_job"])
    assert recompute.kind == JobKind.RECOMPUTE_REPO


def rows() -> set[tuple]:
    return set(
        TestResult.objects.values_list(
            "run__run_id", "run__run_attempt", "test__classname", "test__name", "outcome", "job"
        )
    )


@pytest.mark.django_db(transaction=True)
def test_a_backfill_waits_out_a_spent_rate_limit(github: FakeGitHub, eager: None) -> None:
    add_run_with_artifacts(github, 0)
    repository, _, _ = add_repository(full_name=REPO, backfill=False)
    github.spend_rate_limit(TOKEN, reset_in=120)
    started = time.time()

    job, _ = enqueue_backfill(repository=repository, since=T0 - timedelta(days=1))

    job.refresh_from_db()
    assert job.state == JobState.PENDING and job.attempts == 0
    assert job.next_attempt_at.timestamp() == pytest.approx(started + 120, abs=10)


@pytest.mark.django_db
def test_admin_adds_repositories_with_github_settings_and_polls_them(client) -> None:
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("ops", password="x"))
    prefix = "github-0-"
    response = client.post(
        "/admin/ingest/repository/add/",
        {
            "full_name": "acme/admin-added",
            "default_branch": "trunk",
            "github-TOTAL_FORMS": "1",
            "github-INITIAL_FORMS": "0",
            f"{prefix}artifact_pattern": "junit-*",
            f"{prefix}polling_enabled": "on",
            f"{prefix}poll_interval_seconds": "120",
            f"{prefix}conclusion_policy": "always_neutral",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    repository = Repository.objects.get(full_name="acme/admin-added")
    assert repository.default_branch == "trunk"
    assert repository.github.artifact_pattern == "junit-*"
    assert repository.github.conclusion_policy == "always_neutral"
    # Following it brought its history, as add_repo does.
    [backfill] = Job.objects.filter(kind=JobKind.BACKFILL_REPO)
    assert backfill.payload == {"repository_id": repository.pk, "days": 30}

    client.post(
        "/admin/ingest/repository/",
        {"action": "poll_now", "_selected_action": [repository.pk]},
    )
    assert Job.objects.get(kind=JobKind.POLL_REPO).payload == {"repository_id": repository.pk}
    assert client.get("/admin/polling/artifact/").status_code == 200
    assert client.get("/admin/polling/webhookdelivery/").status_code == 200
    assert client.get("/admin/polling/checkrun/").status_code == 200
