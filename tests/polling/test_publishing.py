"""Publishing the FlakeGuard check run against the fake GitHub server, with the real PyGithub client."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from analysis.models import Quarantine
from analysis.quarantines import quarantine_tests
from analysis.services import analyze_run
from ingest.models import Repository, TestCase, WorkflowRun
from ingest.runs import RunFile, RunInfo
from ingest.store import store_run
from jobs.dispatch import enqueue_job
from jobs.errors import TransientJobError
from jobs.models import Job, JobKind, JobState
from jobs.runner import run_job
from polling.models import CheckRun, CheckRunState, ConclusionPolicy, GitHubSettings
from polling.publishing import (
    MAX_ANNOTATIONS,
    failed_tests_of_commit,
    publish_check_run,
    publish_for_verdicts_job,
)
from tests.analysis.factories import TestScoreFactory
from tests.github_fake import FakeGitHub
from tests.ingest.junit_samples import pytest_report, write

REPO = "acme/shop"
SHA = "c0ffee" + "0" * 34
BASE = datetime(2026, 9, 1, 8, tzinfo=UTC)
CHECK_RUNS = r"/repos/acme/shop/check-runs$"
CHECK_RUN = r"/repos/acme/shop/check-runs/\d+$"


@pytest.fixture
def github(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.repo(REPO)
    return fake_github


def store(
    tmp_path: Path,
    outcomes: dict[str, str],
    *,
    run_id: int = 1,
    attempt: int = 1,
    sha: str = SHA,
    analyzed: bool = True,
) -> int:
    """Store a run of the commit; mark it analyzed without scoring (scores come from factories)."""
    cases = [("tests.test_shop", name, outcome) for name, outcome in outcomes.items()]
    path = write(tmp_path / f"{sha[:7]}-{run_id}-{attempt}" / "junit.xml", pytest_report(cases))
    run = RunInfo(
        repo=REPO,
        run_id=run_id,
        run_attempt=attempt,
        sha=sha,
        branch="feature",
        event="pull_request",
        workflow="ci",
        started_at=BASE + timedelta(minutes=40 * run_id + 15 * attempt),
    )
    outcome = store_run(run=run, files=[RunFile(path=path, label="linux")])
    assert outcome.run_pk is not None
    if analyzed:
        WorkflowRun.objects.filter(pk=outcome.run_pk).update(analyzed_at=timezone.now())
    return outcome.run_pk


def repository() -> Repository:
    return Repository.objects.get(full_name=REPO)


def follow(
    policy: str = ConclusionPolicy.NEUTRAL_WHEN_ALL_FLAKY, *, since: datetime = BASE
) -> Repository:
    """Follow the repository on GitHub from ``since`` (before the runs stored here, by default)."""
    settings, _ = GitHubSettings.objects.update_or_create(
        repository=repository(), defaults={"conclusion_policy": policy, "followed_since": since}
    )
    return settings.repository


def verdict_jobs(head_sha: str = SHA) -> list[Job]:
    return list(
        Job.objects.filter(kind=JobKind.VERDICTS_CHANGED, payload__head_sha=head_sha).order_by("pk")
    )


def case_named(name: str) -> TestCase:
    return TestCase.objects.get(repository__full_name=REPO, name=name)


def make_flaky(name: str, *, quarantined: bool = False) -> TestCase:
    test = case_named(name)
    TestScoreFactory(test=test, flaky=True)
    if quarantined:
        Quarantine.objects.create(test=test, repository=test.repository, created_by="octocat")
    return test


def the_check_run(github: FakeGitHub) -> dict:
    [check] = github.repo(REPO).check_runs.values()
    return check


# --- one check run per commit -----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_analyzed_runs_of_a_commit_update_one_check_run(
    tmp_path: Path, github: FakeGitHub, settings
) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True  # storing runs carries the jobs through
    store(tmp_path, {"test_a": "passed"}, run_id=1, sha="f" * 40, analyzed=False)
    follow()

    store(tmp_path, {"test_a": "failed", "test_b": "passed"}, run_id=2, analyzed=False)
    store(tmp_path, {"test_c": "failed"}, run_id=3, analyzed=False)

    publishes = verdict_jobs()
    assert [job.state for job in publishes] == [JobState.SUCCEEDED] * 2
    assert [job.result["created"] for job in publishes] == [True, False]
    assert len(github.requests_to(CHECK_RUNS, "POST")) == 1
    assert len(github.requests_to(CHECK_RUN, "PATCH")) == 1
    check = the_check_run(github)
    assert check["name"] == "FlakeGuard" and check["head_sha"] == SHA
    assert check["conclusion"] == "failure"
    assert "## New failures (2)" in check["output"]["summary"]
    row = CheckRun.objects.get()
    assert (row.github_id, row.state, row.new_failures) == (check["id"], "published", 2)


@pytest.mark.django_db(transaction=True)
def test_concurrent_publishers_of_one_commit_create_one_check_run(
    tmp_path: Path, github: FakeGitHub
) -> None:
    store(tmp_path, {"test_a": "failed", "test_b": "failed"})
    follow()
    # A slow create keeps the first publisher inside its lock while the others arrive.
    github.delay_next(CHECK_RUNS, 0.5)
    barrier = threading.Barrier(5)
    results: list[dict] = []
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            barrier.wait()
            results.append(publish_check_run(repository=repository(), head_sha=SHA))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=publish) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(r["created"] for r in results) == [False] * 4 + [True]
    assert len(github.requests_to(CHECK_RUNS, "POST")) == 1
    assert len(github.requests_to(CHECK_RUN, "PATCH")) == 4
    check = the_check_run(github)
    assert {r["github_id"] for r in results} == {check["id"]}
    assert CheckRun.objects.get().github_id == check["id"]


@pytest.mark.django_db
def test_publishing_twice_updates_the_check_run_in_place(
    tmp_path: Path, github: FakeGitHub
) -> None:
    store(tmp_path, {"test_a": "failed"})
    follow()

    first = publish_check_run(repository=repository(), head_sha=SHA)
    second = publish_check_run(repository=repository(), head_sha=SHA)

    assert first["created"] and not second["created"]
    assert first["github_id"] == second["github_id"]
    assert len(github.requests_to(CHECK_RUNS, "POST")) == 1
    assert CheckRun.objects.count() == 1


# --- what the check run says --------------------------------------------------


@pytest.mark.django_db
def test_summary_splits_known_flakes_from_new_failures(tmp_path: Path, github: FakeGitHub) -> None:
    store(
        tmp_path,
        {"test_new": "failed", "test_flaky": "failed", "test_q": "error", "test_ok": "passed"},
    )
    follow()
    make_flaky("test_flaky")
    make_flaky("test_q", quarantined=True)

    result = publish_check_run(repository=repository(), head_sha=SHA)

    check = the_check_run(github)
    summary = check["output"]["summary"]
    new_part, known_part = summary.split("## Known flaky (2)")
    assert "## New failures (1)" in new_part and "test_shop::test_new" in new_part
    assert "test_shop::test_flaky`: flakiness 0.86, not quarantined" in known_part
    assert "test_shop::test_q`: flakiness 0.86, quarantined" in known_part
    assert "failed and passed on abc1234 in linux" in known_part
    assert "test_ok" not in summary
    levels = {a["title"]: a["annotation_level"] for a in check["annotations"]}
    assert levels == {
        "New failure: tests.test_shop::test_new": "failure",
        "Known flaky: tests.test_shop::test_flaky": "warning",
        "Known flaky: tests.test_shop::test_q": "warning",
    }
    assert {a["path"] for a in check["annotations"]} == {"tests/test_shop"}
    assert check["output"]["title"] == "1 new failure, 2 known flaky"
    row = CheckRun.objects.get()
    assert (row.new_failures, row.known_flaky_failures) == (1, 2)
    assert row.flaky_tests == [case_named("test_flaky").pk]
    assert result["conclusion"] == row.conclusion == "failure"


@pytest.mark.parametrize(
    ("policy", "all_flaky", "some_new", "none"),
    [
        (ConclusionPolicy.NEUTRAL_WHEN_ALL_FLAKY, "neutral", "failure", "success"),
        (ConclusionPolicy.SUCCESS_WHEN_ALL_FLAKY, "success", "failure", "success"),
        (ConclusionPolicy.ALWAYS_NEUTRAL, "neutral", "neutral", "neutral"),
    ],
)
@pytest.mark.django_db
def test_conclusion_follows_the_repositorys_policy(
    tmp_path: Path, github: FakeGitHub, policy: str, all_flaky: str, some_new: str, none: str
) -> None:
    store(tmp_path, {"test_flaky": "failed", "test_new": "passed"}, sha="a" * 40)
    store(tmp_path, {"test_flaky": "failed", "test_new": "failed"}, run_id=2, sha="b" * 40)
    store(tmp_path, {"test_flaky": "passed", "test_new": "passed"}, run_id=3, sha="c" * 40)
    follow(policy)
    make_flaky("test_flaky")

    conclusions = [
        publish_check_run(repository=repository(), head_sha=sha)["conclusion"]
        for sha in ("a" * 40, "b" * 40, "c" * 40)
    ]

    assert conclusions == [all_flaky, some_new, none]
    sent = {c["head_sha"]: c["conclusion"] for c in github.repo(REPO).check_runs.values()}
    assert sent == {"a" * 40: all_flaky, "b" * 40: some_new, "c" * 40: none}


@pytest.mark.django_db
def test_more_than_50_failures_are_annotated_in_batches_of_50(
    tmp_path: Path, github: FakeGitHub
) -> None:
    store(tmp_path, {f"test_{n:03d}": "failed" for n in range(120)})
    follow()

    publish_check_run(repository=repository(), head_sha=SHA)

    # The fake answers 422 to a request with more than 50 annotations. (It
    # extends the created check run's list in place, so the logged POST body
    # grows with later batches and is not read here.)
    [create] = github.requests_to(CHECK_RUNS, "POST")
    assert create.status == 201
    patches = github.requests_to(CHECK_RUN, "PATCH")
    assert [len(p.body["output"]["annotations"]) for p in patches] == [50, 20]
    for patch in patches:
        assert set(patch.body["output"]) == {"title", "summary", "annotations"}
    annotations = the_check_run(github)["annotations"]
    assert len(annotations) == 120
    assert len({a["title"] for a in annotations}) == 120  # each failure once


@pytest.mark.django_db
def test_a_commit_with_3000_failures_gets_a_check_run_github_accepts(
    tmp_path: Path, github: FakeGitHub
) -> None:
    store(tmp_path, {f"test_{'long_name_' * 20}{n:04d}": "failed" for n in range(3000)})
    follow()

    result = publish_check_run(repository=repository(), head_sha=SHA)

    check = the_check_run(github)
    assert len(check["output"]["summary"]) < 65_535
    assert "## New failures (3,000)" in check["output"]["summary"]
    assert "more not shown" in check["output"]["summary"]
    assert len(check["annotations"]) == result["annotations"] == MAX_ANNOTATIONS
    assert all(r.status < 400 for r in github.requests if "check-runs" in r.path)
    assert CheckRun.objects.get().new_failures == 3000


@pytest.mark.django_db
def test_quarantine_action_is_offered_only_while_a_flaky_failure_is_unquarantined(
    tmp_path: Path, github: FakeGitHub
) -> None:
    store(tmp_path, {"test_flaky": "failed", "test_new": "failed"})
    follow()
    flaky = make_flaky("test_flaky")

    publish_check_run(repository=repository(), head_sha=SHA)
    [create] = github.requests_to(CHECK_RUNS, "POST")
    assert [a["identifier"] for a in create.body["actions"]] == ["quarantine"]
    assert CheckRun.objects.get().flaky_tests == [flaky.pk]

    quarantine_tests(tests=[flaky], created_by="octocat")
    publish_check_run(repository=repository(), head_sha=SHA)

    [update] = github.requests_to(CHECK_RUN, "PATCH")
    assert update.body["actions"] == []  # the button offered before is taken back
    assert CheckRun.objects.get().flaky_tests == []


@pytest.mark.django_db
def test_no_quarantine_action_without_flaky_failures(tmp_path: Path, github: FakeGitHub) -> None:
    store(tmp_path, {"test_new": "failed"})
    follow()

    publish_check_run(repository=repository(), head_sha=SHA)

    [create] = github.requests_to(CHECK_RUNS, "POST")
    assert create.body["actions"] == []


# --- which failures belong to the commit --------------------------------------


@pytest.mark.django_db
def test_a_rerun_that_passes_takes_the_failure_back(tmp_path: Path) -> None:
    store(tmp_path, {"test_a": "failed", "test_b": "failed"}, run_id=1, attempt=1)
    store(tmp_path, {"test_a": "passed", "test_b": "failed"}, run_id=1, attempt=2)
    # Another workflow of the commit: its failure stands beside the pass above.
    store(tmp_path, {"test_a": "failed"}, run_id=2)
    # Not analyzed yet: left for its own publish job.
    store(tmp_path, {"test_c": "failed"}, run_id=3, analyzed=False)

    failures = {t.name: t for t in failed_tests_of_commit(repository=repository(), head_sha=SHA)}

    assert set(failures) == {"test_a", "test_b"}
    assert failures["test_a"].jobs == ("linux",)
    assert failures["test_b"].message.startswith("AssertionError")


@pytest.mark.django_db
def test_a_failure_in_an_earlier_attempt_than_the_pass_stands_when_it_failed_again(
    tmp_path: Path,
) -> None:
    store(tmp_path, {"test_a": "failed"}, run_id=1, attempt=1)
    store(tmp_path, {"test_a": "passed"}, run_id=1, attempt=2)
    store(tmp_path, {"test_a": "failed"}, run_id=1, attempt=3)

    [failure] = failed_tests_of_commit(repository=repository(), head_sha=SHA)

    assert failure.name == "test_a"


# --- GitHub refusing or failing -------------------------------------------------


@pytest.mark.django_db
def test_a_refused_write_is_recorded_and_the_job_succeeds_without_retry(
    tmp_path: Path, github: FakeGitHub
) -> None:
    store(tmp_path, {"test_a": "failed"})
    follow()
    github.fail_next(CHECK_RUNS, 403)
    job, _ = enqueue_job(
        kind=JobKind.VERDICTS_CHANGED,
        dedup_key=f"verdicts:test:{SHA}",
        payload={"repository_id": repository().pk, "head_sha": SHA},
    )

    run_job(job.pk, publish_for_verdicts_job)

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.attempts == 1
    assert job.result["published"] is False
    row = CheckRun.objects.get()
    assert row.state == CheckRunState.REFUSED and row.github_id is None
    assert "GitHub refused to write the check run" in row.last_error
    assert "Server Error" in row.last_error  # GitHub's reason, as it answered
    assert len(github.requests_to(CHECK_RUNS, "POST")) == 1


@pytest.mark.django_db
def test_server_errors_are_transient(tmp_path: Path, github: FakeGitHub) -> None:
    store(tmp_path, {"test_a": "failed"})
    follow()
    github.fail_next(CHECK_RUNS, 502, times=10)

    with pytest.raises(TransientJobError):
        publish_check_run(repository=repository(), head_sha=SHA)

    row = CheckRun.objects.get()
    assert row.state == CheckRunState.PENDING and row.github_id is None
    assert "502" in row.last_error


@pytest.mark.django_db
def test_a_server_error_as_a_job_is_retried_later(tmp_path: Path, github: FakeGitHub) -> None:
    store(tmp_path, {"test_a": "failed"})
    follow()
    github.fail_next(CHECK_RUNS, 503, times=10)
    job, _ = enqueue_job(
        kind=JobKind.VERDICTS_CHANGED,
        dedup_key=f"verdicts:test:{SHA}",
        payload={"repository_id": repository().pk, "head_sha": SHA},
    )

    run_job(job.pk, publish_for_verdicts_job)

    job.refresh_from_db()
    assert job.state == JobState.PENDING and job.attempts == 1
    assert "TransientJobError" in job.last_error


@pytest.mark.django_db
def test_a_retry_after_a_failed_batch_updates_the_check_run_it_created(
    tmp_path: Path, github: FakeGitHub
) -> None:
    store(tmp_path, {f"test_{n:02d}": "failed" for n in range(60)})
    follow()
    github.fail_next(CHECK_RUN, 502, times=10)  # the create works, the second batch fails

    with pytest.raises(TransientJobError):
        publish_check_run(repository=repository(), head_sha=SHA)
    github_id = CheckRun.objects.get().github_id
    assert github_id is not None

    github.failures.clear()
    publish_check_run(repository=repository(), head_sha=SHA)

    assert len(github.requests_to(CHECK_RUNS, "POST")) == 1
    assert CheckRun.objects.get().github_id == github_id
    assert CheckRun.objects.get().state == CheckRunState.PUBLISHED


# --- announced by analysis, decided by the edge ----------------------------------


@pytest.mark.django_db
def test_analyze_run_announces_that_the_commits_verdicts_changed(
    tmp_path: Path, github: FakeGitHub
) -> None:
    run_pk = store(tmp_path, {"test_a": "failed"}, analyzed=False)
    follow()

    analyze_run(run_pk=run_pk)

    [job] = verdict_jobs()
    assert job.dedup_key == f"verdicts:{repository().pk}:{SHA}:run:{run_pk}"
    assert job.payload == {"repository_id": repository().pk, "head_sha": SHA}


@pytest.mark.django_db
def test_without_github_credentials_nothing_is_published(
    tmp_path: Path, github: FakeGitHub, settings
) -> None:
    settings.GITHUB_TOKEN = ""
    settings.GITHUB_APP_ID = ""
    run_pk = store(tmp_path, {"test_a": "failed"}, analyzed=False)
    follow()
    analyze_run(run_pk=run_pk)
    [job] = verdict_jobs()

    run_job(job.pk, publish_for_verdicts_job)

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
    assert job.result["published"] is False
    assert "credentials" in job.result["reason"]
    assert github.requests == []


@pytest.mark.django_db
def test_a_repository_not_followed_on_github_gets_no_check_run(
    tmp_path: Path, github: FakeGitHub
) -> None:
    run_pk = store(tmp_path, {"test_a": "failed"}, analyzed=False)
    analyze_run(run_pk=run_pk)
    [job] = verdict_jobs()

    run_job(job.pk, publish_for_verdicts_job)

    job.refresh_from_db()
    assert job.result == {
        "published": False,
        "head_sha": SHA,
        "reason": "the repository is not followed on GitHub",
    }
    assert github.requests == [] and not CheckRun.objects.exists()


@pytest.mark.django_db
def test_history_from_before_the_repository_was_followed_gets_no_check_run(
    tmp_path: Path, github: FakeGitHub
) -> None:
    old = store(tmp_path, {"test_a": "failed"}, analyzed=False)  # started at BASE + 55 min
    follow(since=BASE + timedelta(days=1))
    analyze_run(run_pk=old)
    fresh_sha = "beef" + "0" * 36
    fresh = store(tmp_path, {"test_a": "failed"}, run_id=50, sha=fresh_sha, analyzed=False)
    analyze_run(run_pk=fresh)  # started at BASE + 33 h, after the repository was followed

    for job in [*verdict_jobs(SHA), *verdict_jobs(fresh_sha)]:
        run_job(job.pk, publish_for_verdicts_job)

    [old_job] = verdict_jobs(SHA)
    old_job.refresh_from_db()
    assert old_job.result["published"] is False
    assert old_job.result["reason"] == "its runs completed before the repository was followed"
    assert [c["head_sha"] for c in github.repo(REPO).check_runs.values()] == [fresh_sha]


@pytest.mark.django_db
def test_publishing_again_sends_each_annotation_once(tmp_path: Path, github: FakeGitHub) -> None:
    store(tmp_path, {f"test_{n}": "failed" for n in range(60)} | {"test_ok": "passed"})
    follow()

    publish_check_run(repository=repository(), head_sha=SHA)
    publish_check_run(repository=repository(), head_sha=SHA)
    store(tmp_path, {"test_late": "failed"}, run_id=2)
    publish_check_run(repository=repository(), head_sha=SHA)

    check = the_check_run(github)
    assert len(check["annotations"]) == 61  # 60, then only the new one
    assert len(CheckRun.objects.get().annotated) == 61


@pytest.mark.django_db
def test_a_commit_whose_results_retention_removed_keeps_its_check_run_as_it_was(
    tmp_path: Path, github: FakeGitHub
) -> None:
    from analysis.announcements import announce_verdicts_changed
    from analysis.retention import prune_results

    run_pk = store(tmp_path, {"test_a": "failed"}, analyzed=False)
    follow()
    analyze_run(run_pk=run_pk)
    [job] = verdict_jobs()
    run_job(job.pk, publish_for_verdicts_job)
    sent = len(github.requests_to(CHECK_RUNS, "POST"))
    assert sent == 1 and CheckRun.objects.get(head_sha=SHA).new_failures == 1
    prune_results(days=90, now=BASE + timedelta(days=100))
    assert WorkflowRun.objects.get(pk=run_pk).results_pruned_at is not None

    announce_verdicts_changed(repository_id=repository().pk, head_sha=SHA, cause="late")
    job = verdict_jobs()[-1]
    run_job(job.pk, publish_for_verdicts_job)

    # Published again it would say nothing failed: it is left as it was.
    job.refresh_from_db()
    assert job.result["published"] is False and "retention" in job.result["reason"]
    assert len(github.requests_to(CHECK_RUNS, "POST")) == sent
    assert not github.requests_to(CHECK_RUN, "PATCH")
    assert CheckRun.objects.get(head_sha=SHA).new_failures == 1
