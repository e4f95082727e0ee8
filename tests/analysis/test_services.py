"""Analysis services on PostgreSQL: runs-analyze, tests-recompute, the repository lock, quarantine."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

import analysis.database
from analysis.database import lock_repository_analysis
from analysis.models import Quarantine, ScoringConfig, TestScore
from analysis.quarantines import quarantine_tests, release_tests
from analysis.services import (
    analyze_run,
    enqueue_recompute,
    recompute_repository,
    update_scoring_settings,
)
from analysis.tallies import with_tallies
from ingest.models import Repository, TestCase, WorkflowRun
from ingest.runs import RunFile, RunInfo
from ingest.store import store_run
from jobs.models import Job, JobKind, JobState
from jobs.runner import claim_job, run_job
from tests.ingest.junit_samples import pytest_report, write

BASE = datetime(2026, 9, 1, 8, tzinfo=UTC)
REPO = "acme/shop"


def store(
    tmp_path: Path,
    run_id: int,
    outcomes: dict[str, str],
    *,
    attempt: int = 1,
    sha: str | None = None,
    repo: str = REPO,
) -> int:
    cases = [("tests.test_shop", name, outcome) for name, outcome in outcomes.items()]
    path = write(tmp_path / repo / f"{run_id}-{attempt}" / "junit.xml", pytest_report(cases))
    run = RunInfo(
        repo=repo,
        run_id=run_id,
        run_attempt=attempt,
        sha=sha or f"{run_id:040x}",
        branch="main",
        event="push",
        workflow="ci",
        started_at=BASE + timedelta(minutes=40 * run_id + 15 * (attempt - 1)),
    )
    outcome = store_run(run=run, files=[RunFile(path=path, label="linux")])
    assert outcome.run_pk is not None
    return outcome.run_pk


def history_outcomes(rng: random.Random, run: int) -> dict[str, str]:
    """Ten tests: a flake, a test broken for runs 20-29, a skipped one, and stable ones."""
    outcomes = {f"test_{n}": "passed" for n in range(7)}
    outcomes["test_flaky"] = "failed" if rng.random() < 0.2 else "passed"
    outcomes["test_broken"] = "failed" if 20 <= run < 30 else "passed"
    outcomes["test_skipped"] = "skipped"
    return outcomes


def scores() -> dict[str, tuple]:
    return {
        s.test.name: (s.verdict, round(s.score, 4), s.results, s.failures, s.clean_since)
        for s in with_tallies(TestScore.objects.select_related("test"))
    }


@pytest.mark.django_db
def test_storing_a_run_enqueues_its_analysis(tmp_path: Path) -> None:
    run_pk = store(tmp_path, 1, {"test_a": "passed"})
    job = Job.objects.get(dedup_key=f"analyze:{run_pk}")
    assert job.kind == JobKind.ANALYZE_RUN and job.payload == {"run_pk": run_pk}


@pytest.mark.django_db
def test_analyze_run_scores_its_tests_once_even_when_run_twice(tmp_path: Path) -> None:
    run_pk = store(tmp_path, 1, {"test_a": "passed", "test_b": "failed", "test_c": "skipped"})

    first = analyze_run(run_pk=run_pk)
    after_first = scores()
    second = analyze_run(run_pk=run_pk)

    assert first["analyzed"] and first["tests"] == 3
    assert second == {"analyzed": False, "reason": "already analyzed", "run_pk": run_pk}
    assert scores() == after_first
    assert after_first["test_a"][0] == "new" and after_first["test_b"][2:4] == (1, 1)
    assert WorkflowRun.objects.get(pk=run_pk).analyzed_at is not None


@pytest.mark.django_db
def test_incremental_analysis_agrees_with_a_full_recompute(tmp_path: Path) -> None:
    rng = random.Random(7)
    for run in range(1, 61):
        run_pk = store(tmp_path, run, history_outcomes(rng, run))
        result = analyze_run(run_pk=run_pk)
        assert result["tests"] == 10
    incremental = scores()
    assert incremental["test_flaky"][0] == "flaky"
    assert incremental["test_broken"][0] == "stable"  # fixed at run 30
    assert incremental["test_skipped"][0] == "stable"

    recompute_repository(repository=Repository.objects.get(full_name=REPO))

    assert scores() == incremental


@pytest.mark.django_db
def test_most_tests_of_a_run_are_advanced_without_reading_their_history(
    tmp_path: Path, django_assert_max_num_queries
) -> None:
    rng = random.Random(3)
    for run in range(1, 40):
        analyze_run(run_pk=store(tmp_path, run, history_outcomes(rng, run)))
    outcomes = {f"test_{n}": "passed" for n in range(7)} | {"test_broken": "passed"}
    run_pk = store(tmp_path, 40, outcomes)

    with django_assert_max_num_queries(32):  # a fixed number, however many tests
        result = analyze_run(run_pk=run_pk)

    assert result["tests"] == 8 and result["rescored"] <= 1
    # The stable ones are at rest: tallied, their scores not even written.
    assert result["tallied"] >= 6


@pytest.mark.django_db(transaction=True)
def test_analyses_of_one_repository_take_turns_and_lose_no_update(tmp_path: Path) -> None:
    runs = [store(tmp_path, run, {f"test_{n}": "passed" for n in range(20)}) for run in (1, 2, 3)]
    repository = Repository.objects.get(full_name=REPO)
    analyze_run(run_pk=runs[0])
    finished: list[str] = []

    def analyze(run_pk: int) -> None:
        try:
            analyze_run(run_pk=run_pk)
            finished.append(str(run_pk))
        finally:
            connection.close()

    with transaction.atomic():
        lock_repository_analysis(repository.pk)  # as a long analysis would
        workers = [threading.Thread(target=analyze, args=(pk,)) for pk in runs[1:]]
        for worker in workers:
            worker.start()
        time.sleep(0.5)
        assert finished == []  # both wait for the lock
    for worker in workers:
        worker.join(timeout=30)

    assert sorted(finished) == sorted(str(pk) for pk in runs[1:])
    assert set(TestScore.objects.values_list("results", flat=True)) == {3}


@pytest.mark.django_db
def test_recompute_resumes_from_its_last_batch_after_an_interruption(tmp_path: Path) -> None:
    rng = random.Random(5)
    for run in range(1, 31):
        store(tmp_path, run, history_outcomes(rng, run))
    repository = Repository.objects.get(full_name=REPO)
    recompute_repository(repository=repository, batch_size=3)
    uninterrupted = scores()
    TestScore.objects.all().delete()
    WorkflowRun.objects.update(analyzed_at=None)

    job, _ = enqueue_recompute(repository=repository, reason="test")
    job = claim_job(job.pk)
    seen: list[int] = []

    def crash_after_two_batches(done: int, total: int) -> None:
        seen.append(done)
        if done >= 6:
            raise KeyboardInterrupt("worker stopped")

    with pytest.raises(KeyboardInterrupt):
        recompute_repository(
            repository=repository, job=job, batch_size=3, on_progress=crash_after_two_batches
        )
    job.refresh_from_db()
    assert job.progress["done"] == 6 and job.progress["total"] == 10
    assert TestScore.objects.count() == 6

    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    job = claim_job(job.pk)
    assert job.attempts == 2
    resumed: list[int] = []
    result = recompute_repository(
        repository=repository, job=job, batch_size=3, on_progress=lambda d, t: resumed.append(d)
    )

    assert resumed[0] == 6 and resumed[-1] == 10
    assert result["tests"] == 10
    assert scores() == uninterrupted


@pytest.mark.django_db
def test_recompute_takes_in_unanalyzed_runs_so_their_analyze_jobs_do_nothing(
    tmp_path: Path,
) -> None:
    run_pks = [store(tmp_path, run, {"test_a": "passed", "test_b": "failed"}) for run in (1, 2)]

    result = recompute_repository(repository=Repository.objects.get(full_name=REPO))

    assert result["runs_taken_in"] == 2
    assert [analyze_run(run_pk=pk)["analyzed"] for pk in run_pks] == [False, False]
    assert TestScore.objects.get(test__name="test_b").results == 2


@pytest.mark.django_db
def test_recompute_job_runs_through_the_job_runner(tmp_path: Path) -> None:
    store(tmp_path, 1, {"test_a": "passed"})
    job, created = enqueue_recompute(
        repository=Repository.objects.get(full_name=REPO), reason="test"
    )
    again, created_again = enqueue_recompute(
        repository=Repository.objects.get(full_name=REPO), reason="test"
    )
    assert created and not created_again and again.pk == job.pk

    run_job(job.pk, lambda j: recompute_repository(repository=Repository.objects.get(), job=j))

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
    assert job.result["tests"] == 1 and job.progress["done"] == 1


@pytest.mark.django_db
def test_analyze_job_for_a_missing_run_is_dead_at_once() -> None:
    from analysis.services import analyze_run_job

    job = Job.objects.create(
        kind=JobKind.ANALYZE_RUN,
        dedup_key="analyze:424242",
        payload={"run_pk": 424242},
        next_attempt_at=timezone.now(),
    )
    run_job(job.pk, analyze_run_job)
    job.refresh_from_db()
    assert job.state == JobState.DEAD and "run 424242 does not exist" in job.last_error


@pytest.mark.django_db
def test_changing_scoring_settings_rescores_with_them(tmp_path: Path) -> None:
    for run in range(1, 21):
        outcomes = {"test_a": "passed"}
        store(tmp_path, run, outcomes)
    failed = store(tmp_path, 21, {"test_a": "failed"}, sha="c" * 40)
    store(tmp_path, 21, {"test_a": "passed"}, attempt=2, sha="c" * 40)
    repository = Repository.objects.get(full_name=REPO)
    recompute_repository(repository=repository)
    assert TestScore.objects.get().verdict == "flaky"
    assert failed

    with pytest.raises(ValueError, match="unknown scoring setting"):
        update_scoring_settings(repository=repository, overrides={"weight": 1})
    job = update_scoring_settings(repository=repository, overrides={"same_commit_weight": 0.2})
    assert ScoringConfig.objects.get().overrides == {"same_commit_weight": 0.2}
    assert job.kind == JobKind.RECOMPUTE_REPO and job.state == JobState.PENDING

    recompute_repository(repository=repository)
    assert TestScore.objects.get().verdict == "stable"


@pytest.mark.django_db
def test_quarantine_keeps_the_first_decision_and_release_removes_it(tmp_path: Path) -> None:
    store(tmp_path, 1, {"test_a": "failed", "test_b": "passed"})
    tests = list(TestCase.objects.order_by("name"))

    quarantine_tests(tests=tests[:1], created_by="alice", reason="flaky, see #12")
    quarantine_tests(tests=tests, created_by="bob")

    assert dict(Quarantine.objects.values_list("test__name", "created_by")) == {
        "test_a": "alice",
        "test_b": "bob",
    }
    assert release_tests(tests=tests[:1]) == 1
    assert list(Quarantine.objects.values_list("test__name", flat=True)) == ["test_b"]


@pytest.mark.django_db
def test_a_backlog_of_runs_is_taken_in_by_one_rescore(tmp_path: Path, settings) -> None:
    settings.FLAKEGUARD_ANALYSIS_BACKLOG = 3
    run_pks = [store(tmp_path, run, {"test_a": "passed", "test_b": "failed"}) for run in (1, 2, 3)]

    first = analyze_run(run_pk=run_pks[0])
    rest = [analyze_run(run_pk=pk)["analyzed"] for pk in run_pks[1:]]

    assert first["recomputed"]["runs_taken_in"] == 3 and first["recomputed"]["tests"] == 2
    assert rest == [False, False]
    assert TestScore.objects.get(test__name="test_b").results == 3
    # Every commit still hears that its verdicts changed, once: its check run.
    announced = Job.objects.filter(kind=JobKind.VERDICTS_CHANGED)
    assert sorted(j.payload["head_sha"] for j in announced) == sorted(
        f"{run:040x}" for run in (1, 2, 3)
    )
    analyze_run(run_pk=run_pks[1])  # delivered again: announced already
    assert announced.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_bulk_import_on_the_embedded_default_is_analyzed_once_it_is_stored(
    tmp_path: Path, settings
) -> None:
    from ingest.services import import_runs

    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.FLAKEGUARD_ANALYSIS_BACKLOG = 3
    runs = []
    for run_id in range(1, 6):
        report = write(
            tmp_path / f"{run_id}" / "junit.xml",
            pytest_report([("tests.test_shop", "test_a", "passed")]),
        )
        info = RunInfo(
            repo=REPO,
            run_id=run_id,
            run_attempt=1,
            sha=f"{run_id:040x}",
            started_at=BASE + timedelta(hours=run_id),
        )
        runs.append((info, [RunFile(path=report)]))

    summary = import_runs(runs=runs)

    assert summary.runs_imported == 5
    analyses = Job.objects.filter(kind=JobKind.ANALYZE_RUN).order_by("pk")
    assert [job.state for job in analyses] == [JobState.SUCCEEDED] * 5
    # The first analysis met all five runs waiting and rescored them at once.
    assert analyses[0].result["recomputed"]["runs_taken_in"] == 5
    assert [job.result["analyzed"] for job in analyses[1:]] == [False] * 4
    assert TestScore.objects.get().results == 5


@pytest.mark.django_db
def test_a_failure_at_the_tip_of_a_branch_waits_for_the_branch_s_next_commit(
    tmp_path: Path,
) -> None:
    for run in range(1, 11):
        analyze_run(run_pk=store(tmp_path, run, {"test_a": "passed"}))
    analyze_run(run_pk=store_branch_run(tmp_path, 11, "passed", branch="feature/x"))
    tip = store_branch_run(tmp_path, 12, "failed", branch="feature/x")
    analyze_run(run_pk=tip)
    analyze_run(run_pk=store(tmp_path, 13, {"test_a": "passed"}))
    waiting = TestScore.objects.get()
    assert waiting.components["pending_branches"] == ["feature/x"]
    assert waiting.components["isolated"]["evidence"] == 0.25  # half: nothing after it yet

    result = analyze_run(run_pk=store_branch_run(tmp_path, 14, "passed", branch="feature/x"))

    assert result["rescored"] == 1
    settled = TestScore.objects.get()
    assert "pending_branches" not in settled.components
    assert settled.components["isolated"]["evidence"] == 0.5


def store_branch_run(tmp_path: Path, run_id: int, outcome: str, *, branch: str) -> int:
    path = write(
        tmp_path / branch / f"{run_id}" / "junit.xml",
        pytest_report([("tests.test_shop", "test_a", outcome)]),
    )
    run = RunInfo(
        repo=REPO,
        run_id=run_id,
        run_attempt=1,
        sha=f"{run_id:040x}",
        branch=branch,
        event="pull_request",
        started_at=BASE + timedelta(minutes=40 * run_id),
    )
    outcome_ = store_run(run=run, files=[RunFile(path=path, label="linux")])
    assert outcome_.run_pk is not None
    return outcome_.run_pk


@pytest.mark.django_db
def test_nightly_schedule_queues_one_recompute_per_repository(tmp_path: Path) -> None:
    from analysis.services import schedule_recomputes
    from flakeguard.celery import app

    store(tmp_path, 1, {"test_a": "passed"})
    store(tmp_path, 1, {"test_a": "passed"}, repo="acme/other")

    assert schedule_recomputes() == 2
    assert schedule_recomputes() == 0  # still waiting: not queued twice
    queued = Job.objects.filter(kind=JobKind.RECOMPUTE_REPO, state=JobState.PENDING)
    assert sorted(job.payload["reason"] for job in queued) == ["nightly", "nightly"]
    nightly = app.conf.beat_schedule["nightly-recompute"]
    assert nightly["task"] == "analysis.schedule_recomputes"
    assert (
        nightly["options"]["queue"] == "scheduler"
    )  # the fan-out; the recomputes run on tests-recompute


# --- counting: every analyzed run once, whatever runs concurrently -----------------


def counted_results() -> dict[str, tuple[int, int]]:
    """(results, failures) of each test over the analyzed runs, counted from the rows.

    A run being applied in batches counts for the tests it has reached.
    """
    from django.db.models import F, Q

    from ingest.models import TestResult

    counts: dict[str, list[int]] = {}
    for name, outcome in TestResult.objects.filter(
        Q(run__analyzed_at__isnull=False) | Q(run__analyzed_upto_test__gte=F("test_id"))
    ).values_list("test__name", "outcome"):
        entry = counts.setdefault(name, [0, 0])
        entry[0] += 1
        entry[1] += outcome in ("failed", "error")
    return {name: (results, failures) for name, (results, failures) in counts.items()}


def scored_counts() -> dict[str, tuple[int, int]]:
    return {name: (results, failures) for name, (_, _, results, failures, _) in scores().items()}


def wait_for_a_lock_wait() -> None:
    with connection.cursor() as cursor:
        for _ in range(3000):
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("the rescore never waited for the results table")


@pytest.mark.django_db(transaction=True)
def test_a_run_stored_while_a_rescore_reads_is_counted_once(tmp_path: Path) -> None:
    rng = random.Random(7)
    for run in range(1, 21):
        store(tmp_path, run, history_outcomes(rng, run))
    repository = Repository.objects.get(full_name=REPO)
    recompute_repository(repository=repository)
    finished: list[dict] = []

    def rescore() -> None:
        try:
            finished.append(recompute_repository(repository=repository, batch_size=100))
        finally:
            connection.close()

    # The rescore reads which runs are analyzed, then the results; a run lands
    # between the two reads: the results table is held until it is stored.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE ingest_testresult IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=rescore)
        worker.start()
        wait_for_a_lock_wait()
        late = store(tmp_path, 21, history_outcomes(rng, 21) | {"test_flaky": "failed"})
    worker.join(timeout=60)
    assert finished, "the rescore did not finish"
    analyze_run(run_pk=late)  # the late run's own analysis, after the rescore

    assert WorkflowRun.objects.filter(analyzed_at__isnull=True).count() == 0
    assert scored_counts() == counted_results()
    assert scored_counts()["test_0"] == (21, 0)


@pytest.mark.django_db
def test_a_backlog_rescore_interrupted_resumes_in_its_analyze_job(tmp_path: Path, settings) -> None:
    settings.FLAKEGUARD_ANALYSIS_BACKLOG = 5
    settings.FLAKEGUARD_RECOMPUTE_BATCH_SIZE = 3
    rng = random.Random(3)
    run_pks = [store(tmp_path, run, history_outcomes(rng, run)) for run in range(1, 9)]
    job = Job.objects.get(dedup_key=f"analyze:{run_pks[-1]}")
    claimed = claim_job(job.pk)
    assert claimed is not None
    batches = 0

    def crash_after_two_batches(done: int, total: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 3:  # the first report is the start, then one per batch
            raise KeyboardInterrupt("worker killed")

    from analysis import services

    with pytest.raises(KeyboardInterrupt):
        services.recompute_repository(
            repository=Repository.objects.get(full_name=REPO),
            job=claimed,
            on_progress=crash_after_two_batches,
        )
    # The runs were taken in with the rescore's progress: nothing is left unanalyzed...
    assert not WorkflowRun.objects.filter(analyzed_at__isnull=True).exists()
    assert Job.objects.get(pk=job.pk).progress["done"] == 6  # two batches of three
    # ...and the job, claimed again once its lease ran out, finishes the rescore.
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    run_job(job.pk, services.analyze_run_job)

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED, job.last_error
    assert job.result["recomputed"]["tests"] == 10
    assert TestScore.objects.count() == 10
    assert scored_counts() == counted_results()


@pytest.mark.parametrize("dense", [False, True], ids=["probing-candidates", "reading-the-batch"])
@pytest.mark.django_db
def test_tests_applied_in_bulk_end_as_they_would_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dense: bool
) -> None:
    """The set-based path and the one-by-one path leave the same rows, components included,
    whether the bulk path probes its candidates or reads every result of the batch."""
    if dense:
        # Reading the whole batch is meant for batches of thousands; here, for any.
        monkeypatch.setattr(analysis.database, "DENSE_MIN_TESTS", 0)
    rng = random.Random(5)
    histories = [history_outcomes(rng, run) | {"test_late": "passed"} for run in range(1, 31)]
    for run, outcomes in enumerate(histories, start=1):
        if run < 4:
            outcomes = {k: v for k, v in outcomes.items() if k != "test_late"}  # a new test later
        for repo, bulk in (("acme/bulk", True), ("acme/python", False)):
            analyze_run(run_pk=store(tmp_path, run, outcomes, repo=repo), bulk=bulk)

    def rows(repo: str) -> dict[str, tuple]:
        return {
            s.test.name: (
                s.verdict, s.score, s.results, s.failures, s.evidence_weight, s.half_life,
                s.clean_since, s.pending, s.latest_result_at, s.flaky_since, s.last_failure_at,
                s.evidence,
            )
            for s in with_tallies(
                TestScore.objects.filter(repository__full_name=repo).select_related("test")
            )
        }  # fmt: skip

    assert rows("acme/bulk") == rows("acme/python")
    bulk_components = {
        s.test.name: s.components
        for s in TestScore.objects.filter(repository__full_name="acme/bulk").select_related("test")
    }
    python_components = {
        s.test.name: s.components
        for s in TestScore.objects.filter(repository__full_name="acme/python").select_related(
            "test"
        )
    }
    # A test first scored in bulk starts from quiet_verdict's components, as a
    # recompute's quiet tests do; what later updates read from them agrees.
    for name, components in bulk_components.items():
        theirs = python_components[name]
        for key in ("skipped", "outage_failures", "pending_branches"):
            assert components.get(key) == theirs.get(key), (name, key)


# --- a large run, applied in batches ------------------------------------------------


def in_thread(work) -> None:
    """Run ``work`` on a connection of its own, as another worker would, and wait for it."""
    failures: list[BaseException] = []

    def body() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the test's thread
            failures.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=body)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the other worker did not finish"
    if failures:
        raise failures[0]


@pytest.mark.parametrize("bulk", [True, False], ids=["in-bulk", "one-by-one"])
@pytest.mark.django_db
def test_a_run_applied_in_batches_ends_as_if_applied_at_once(tmp_path: Path, bulk: bool) -> None:
    rng = random.Random(11)
    for run in range(1, 41):
        outcomes = history_outcomes(rng, run)
        whole = analyze_run(run_pk=store(tmp_path, run, outcomes, repo="acme/whole"), bulk=bulk)
        batched = analyze_run(
            run_pk=store(tmp_path, run, outcomes, repo="acme/batched"), bulk=bulk, batch_tests=3
        )
        assert whole["batches"] == 1 and batched["batches"] == 4  # 10 tests, 3 a batch
        assert batched["tests"] == whole["tests"] == 10

    def rows(repo: str) -> dict[str, tuple]:
        return {
            s.test.name: (s.verdict, s.score, s.results, s.failures, s.clean_since, s.evidence)
            for s in with_tallies(
                TestScore.objects.filter(repository__full_name=repo).select_related("test")
            )
        }

    assert rows("acme/batched") == rows("acme/whole")
    assert rows("acme/batched")["test_flaky"][0] == "flaky"
    assert not WorkflowRun.objects.filter(analyzed_upto_test__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
def test_runs_analyzed_between_the_batches_of_a_large_run_are_each_counted_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    for run in range(1, 21):
        analyze_run(run_pk=store(tmp_path, run, history_outcomes(rng, run)))
    large = store(tmp_path, 21, history_outcomes(rng, 21) | {"test_0": "failed"})
    others = iter(
        [
            store(
                tmp_path, 22, history_outcomes(rng, 22) | {"test_1": "failed", "test_6": "failed"}
            ),
            store(tmp_path, 21, history_outcomes(rng, 21), attempt=2),  # a re-run of the large one
        ]
    )
    seen: list[tuple[int, int | None]] = []

    def between_batches(done: int, total: int) -> None:
        reached = WorkflowRun.objects.get(pk=large).analyzed_upto_test
        seen.append((done, reached))
        # At every step each score holds exactly the runs the readers count.
        assert scored_counts() == counted_results()
        other = next(others, None)
        if other is not None:
            in_thread(lambda: analyze_run(run_pk=other))  # takes the lock between batches
            assert scored_counts() == counted_results()

    result = analyze_run(run_pk=large, batch_tests=3, on_batch=between_batches)

    assert result["batches"] == 4
    assert [done for done, _ in seen] == [1, 2, 3, 4]
    assert all(reached is not None for _, reached in seen[:3]) and seen[3][1] is None
    assert not WorkflowRun.objects.filter(analyzed_at__isnull=True).exists()
    assert scored_counts() == counted_results()
    assert scored_counts()["test_0"] == (23, 1) and scored_counts()["test_6"] == (23, 1)


@pytest.mark.django_db(transaction=True)
def test_a_recompute_between_the_batches_of_a_large_run_takes_it_in_whole(
    tmp_path: Path,
) -> None:
    rng = random.Random(5)
    for run in range(1, 16):
        analyze_run(run_pk=store(tmp_path, run, history_outcomes(rng, run)))
    large = store(tmp_path, 16, history_outcomes(rng, 16) | {"test_2": "failed"})
    repository = Repository.objects.get(full_name=REPO)

    def recompute_after_the_first(done: int, total: int) -> None:
        if done == 1:
            in_thread(lambda: recompute_repository(repository=repository, batch_size=4))

    result = analyze_run(run_pk=large, batch_tests=3, on_batch=recompute_after_the_first)

    assert result["batches"] == 1  # the recompute took in the rest
    run = WorkflowRun.objects.get(pk=large)
    assert run.analyzed_at is not None and run.analyzed_upto_test is None
    assert scored_counts() == counted_results()
    assert scored_counts()["test_2"] == (16, 1)


@pytest.mark.django_db
def test_a_batched_analysis_interrupted_resumes_after_its_last_committed_batch(
    tmp_path: Path, settings
) -> None:
    settings.FLAKEGUARD_ANALYZE_BATCH_TESTS = 3
    rng = random.Random(9)
    for run in range(1, 11):
        analyze_run(run_pk=store(tmp_path, run, history_outcomes(rng, run)))
    large = store(tmp_path, 11, history_outcomes(rng, 11) | {"test_5": "failed"})
    job = Job.objects.get(dedup_key=f"analyze:{large}")
    claimed = claim_job(job.pk)
    assert claimed is not None

    def killed_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt("worker killed")

    with pytest.raises(KeyboardInterrupt):
        analyze_run(run_pk=large, job=claimed, on_batch=killed_after_two)
    half = WorkflowRun.objects.get(pk=large)
    assert half.analyzed_at is None and half.analyzed_upto_test is not None
    assert Job.objects.get(pk=job.pk).progress == {"batches_done": 2, "batches": 4}
    assert scored_counts() == counted_results()  # two batches in, the rest not yet

    # The job, claimed again once its lease ran out, applies the two batches left.
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    from analysis import services

    run_job(job.pk, services.analyze_run_job)

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED, job.last_error
    assert job.result["batches"] == 2 and job.result["tests"] == 4  # 3 + the last one
    assert WorkflowRun.objects.get(pk=large).analyzed_at is not None
    assert scored_counts() == counted_results()
    assert scored_counts()["test_5"] == (11, 1)
