"""Retention: old results go in bounded batches; runs, scores and snapshots stay and say so."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connections

from analysis import retention
from analysis.models import RepositorySnapshot, TestScore
from analysis.retention import prune_results
from analysis.services import recompute_repository
from analysis.snapshots import take_snapshot
from ingest.access import grant
from ingest.models import Repository, TestCase, TestResult, WorkflowRun
from ingest.runs import RunFile, RunInfo
from ingest.store import store_run
from tests.analysis.test_snapshots import report
from tests.ingest.junit_samples import write

REPO = "acme/retained"
TODAY = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
OLD = TODAY - timedelta(days=120)  # two days of history past a 90-day retention
RECENT = TODAY - timedelta(days=10)
SECONDS = 2.0  # every result's duration


def store(
    tmp_path: Path, run_id: int, outcomes: dict[str, str], *, at: datetime, attempt: int = 1
) -> int:
    """One run attempt of ``outcomes`` ({test: passed|failed}); attempts of a run share its sha."""
    path = write(
        tmp_path / f"{run_id}-{attempt}.xml",
        report({name: (outcome, SECONDS) for name, outcome in outcomes.items()}),
    )
    outcome = store_run(
        run=RunInfo(repo=REPO, run_id=run_id, run_attempt=attempt, sha=f"{run_id:040x}",
                    branch="main", event="push", workflow="ci",
                    started_at=at + timedelta(minutes=15 * (attempt - 1))),
        files=[RunFile(path=path, label="linux")],
    )  # fmt: skip
    assert outcome.run_pk is not None
    return outcome.run_pk


def history(tmp_path: Path) -> Repository:
    """Nine attempts on two days 120 days ago, five attempts 10 days ago, all scored.

    ``test_gone`` ran only back then and flaked twice (failed, then passed on a
    re-run); ``test_flaky`` flaked then and flakes still; ``test_steady`` passes.
    """
    for run_id in range(1, 7):
        day = OLD + timedelta(days=(run_id - 1) // 3, hours=run_id)
        failing = {2: "test_gone", 3: "test_flaky", 5: "test_gone"}.get(run_id)
        outcomes = {"test_steady": "passed", "test_gone": "passed", "test_flaky": "passed"}
        if failing:
            store(tmp_path, run_id, {**outcomes, failing: "failed"}, at=day)
            store(tmp_path, run_id, outcomes, at=day, attempt=2)
        else:
            store(tmp_path, run_id, outcomes, at=day)
    for run_id in range(11, 15):
        at = RECENT + timedelta(hours=run_id)
        outcomes = {"test_steady": "passed", "test_flaky": "passed"}
        if run_id == 12:
            store(tmp_path, run_id, {**outcomes, "test_flaky": "failed"}, at=at)
            store(tmp_path, run_id, outcomes, at=at, attempt=2)
        else:
            store(tmp_path, run_id, outcomes, at=at)
    repository = Repository.objects.get(full_name=REPO)
    recompute_repository(repository=repository)
    return repository


def old_results() -> int:
    return TestResult.objects.filter(run__started_at__lt=TODAY - timedelta(days=90)).count()


def recent_results() -> int:
    return TestResult.objects.filter(run__started_at__gte=TODAY - timedelta(days=90)).count()


def score_of(name: str) -> TestScore:
    return TestScore.objects.get(test__name=name)


def spy_on_deletes(monkeypatch) -> list[int]:
    """The rows each delete statement removed, in order."""
    deleted: list[int] = []
    real = retention.delete_results_of_runs

    def spy(run_pks, *, limit):
        outcome = real(run_pks, limit=limit)
        deleted.append(outcome.rows)
        return outcome

    monkeypatch.setattr(retention, "delete_results_of_runs", spy)
    return deleted


@pytest.mark.django_db(transaction=True)
def test_old_results_go_in_bounded_batches_and_runs_scores_snapshots_stay(
    tmp_path: Path, monkeypatch
) -> None:
    repository = history(tmp_path)
    take_snapshot(repository, day=OLD.date())  # the first old day had a snapshot
    snapshot_before = RepositorySnapshot.objects.values().get(day=OLD.date())
    scores_before = dict(TestScore.objects.values_list("test__name", "score"))
    runs_before = WorkflowRun.objects.count()
    assert (old_results(), recent_results()) == (27, 10)
    deleted = spy_on_deletes(monkeypatch)

    summary = prune_results(days=90, batch_size=2, time_budget=600)

    assert (old_results(), recent_results()) == (0, 10)
    # Every statement removed at most a batch, each run's results in two.
    assert deleted == [2, 1] * 9
    assert (summary.results, summary.batches, summary.largest_batch) == (27, 18, 2)
    assert summary.runs == 9 and summary.finished and summary.vacuumed
    assert summary.dead_rows_left == 0
    assert WorkflowRun.objects.count() == runs_before
    pruned = WorkflowRun.objects.filter(results_pruned_at__isnull=False)
    assert sorted(pruned.values_list("run_id", flat=True)) == [1, 2, 2, 3, 3, 4, 5, 5, 6]
    assert not WorkflowRun.objects.filter(run_id__gt=10, results_pruned_at__isnull=False)
    # Pruning rewrites no verdict: it flags the ones counting removed results.
    assert dict(TestScore.objects.values_list("test__name", "score")) == scores_before
    assert all(s.components["history_pruned"] for s in TestScore.objects.all())
    # The day that had a snapshot keeps it as it was; the one that had none got
    # one, with the CI time its re-run cost, before its results went.
    assert RepositorySnapshot.objects.values().get(day=OLD.date()) == snapshot_before
    second_day = RepositorySnapshot.objects.get(day=OLD.date() + timedelta(days=1))
    assert second_day.ci_seconds_lost == 3 * SECONDS


@pytest.mark.django_db(transaction=True)
def test_pruning_again_changes_nothing(tmp_path: Path) -> None:
    history(tmp_path)
    prune_results(days=90)
    runs = list(WorkflowRun.objects.order_by("pk").values_list("pk", "results_pruned_at"))
    scores = list(TestScore.objects.order_by("pk").values())

    again = prune_results(days=90)

    assert (again.runs, again.results, again.batches, again.vacuumed) == (0, 0, 0, False)
    assert list(WorkflowRun.objects.order_by("pk").values_list("pk", "results_pruned_at")) == runs
    assert list(TestScore.objects.order_by("pk").values()) == scores
    assert recent_results() == 10


@pytest.mark.django_db(transaction=True)
def test_rows_an_older_transaction_still_sees_are_left_for_a_later_vacuum(tmp_path: Path) -> None:
    history(tmp_path)
    reader = connections.create_connection("default")  # a report running all along, say
    try:
        reader.ensure_connection()
        reader.connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        reader.connection.execute("SELECT COUNT(*) FROM ingest_testresult")

        summary = prune_results(days=90)

        # Deleted, but not reclaimable while the reader's snapshot lasts: the
        # ranges' summaries are left reset for a vacuum after it.
        assert summary.results == 27 and summary.vacuumed and summary.dead_rows_left == 27
        assert old_results() == 0
    finally:
        reader.close()


@pytest.mark.django_db
def test_retention_of_zero_days_keeps_every_result(tmp_path: Path, settings) -> None:
    history(tmp_path)
    settings.FLAKEGUARD_RETENTION_DAYS = 0

    summary = retention.enforce_retention()

    assert summary["cutoff"] is None and summary["results"] == 0
    assert (old_results(), recent_results()) == (27, 10)
    assert not WorkflowRun.objects.filter(results_pruned_at__isnull=False).exists()


@pytest.mark.django_db
def test_a_rescore_after_pruning_scores_the_window_and_loses_no_flaky_test(
    tmp_path: Path,
) -> None:
    repository = history(tmp_path)
    gone, flaky, steady = score_of("test_gone"), score_of("test_flaky"), score_of("test_steady")
    assert gone.verdict == flaky.verdict == "flaky" and steady.verdict == "stable"
    assert flaky.flaky_since < RECENT - timedelta(days=90)

    prune_results(days=90, batch_size=5)
    recompute_repository(repository=repository)

    # All its results are gone: it keeps its last verdict, not "no data", and says so.
    after = score_of("test_gone")
    assert (after.verdict, after.score, after.results, after.flaky_since) == (
        gone.verdict, gone.score, gone.results, gone.flaky_since,
    )  # fmt: skip
    assert after.components["history_pruned"] is True
    # Flaky then and now: rescored from what is left, and flaky since it first was.
    after = score_of("test_flaky")
    assert after.verdict == "flaky" and after.results == 5 and after.failures == 1
    assert after.flaky_since == flaky.flaky_since
    assert after.components["history_pruned"] is True
    # Steady: the window's results, nothing removed left in its verdict (and 5
    # results are too few to call a test stable, whatever its age).
    after = score_of("test_steady")
    assert (after.verdict, after.results) == ("new", 5)
    assert "history_pruned" not in after.components
    # And again tomorrow, with nothing new removed: the same scores.
    scores = list(TestScore.objects.order_by("pk").values("test_id", "verdict", "flaky_since"))
    recompute_repository(repository=repository)
    assert list(TestScore.objects.order_by("pk").values("test_id", "verdict", "flaky_since")) == (
        scores
    )


@pytest.mark.django_db(transaction=True)
def test_an_interrupted_prune_keeps_its_committed_batches_and_the_next_one_finishes(
    tmp_path: Path, monkeypatch
) -> None:
    history(tmp_path)
    real, calls = retention.delete_results_of_runs, []

    def crashing(run_pks, *, limit):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("worker lost")
        return real(run_pks, limit=limit)

    monkeypatch.setattr(retention, "delete_results_of_runs", crashing)
    with pytest.raises(RuntimeError):
        prune_results(days=90, batch_size=2)
    # Three statements committed (2 + 1 rows of the first run, 2 of the next).
    assert old_results() == 27 - 5
    assert WorkflowRun.objects.filter(results_pruned_at__isnull=False).count() == 1
    monkeypatch.setattr(retention, "delete_results_of_runs", real)

    summary = prune_results(days=90, batch_size=2)

    assert old_results() == 0 and summary.results == 22 and summary.runs == 8
    assert WorkflowRun.objects.filter(results_pruned_at__isnull=False).count() == 9


@pytest.mark.django_db
def test_the_time_budget_stops_the_work_for_the_next_run_to_carry_on(tmp_path: Path) -> None:
    history(tmp_path)

    stopped = prune_results(days=90, time_budget=0)

    assert not stopped.finished and stopped.results == 0 and old_results() == 27
    carried_on = prune_results(days=90, time_budget=600)
    assert carried_on.finished and carried_on.results == 27 and old_results() == 0


@pytest.mark.django_db
def test_old_runs_not_analyzed_yet_keep_their_results_until_they_are(tmp_path: Path) -> None:
    history(tmp_path)
    late = store(tmp_path, 99, {"test_steady": "passed"}, at=OLD)  # a backfill, say

    summary = prune_results(days=90)

    assert summary.waiting_for_analysis == 1
    assert TestResult.objects.filter(run_id=late).count() == 1
    assert WorkflowRun.objects.get(pk=late).results_pruned_at is None


@pytest.mark.django_db
def test_pages_and_api_still_answer_and_say_the_results_are_gone(tmp_path: Path, client) -> None:
    repository = history(tmp_path)
    take_snapshot(repository, day=OLD.date())
    prune_results(days=90)
    user = User.objects.create_user("lead", password="x")
    grant(user=user, repository=repository, role="viewer")
    client.force_login(user)
    gone = TestCase.objects.get(name="test_gone")

    page = client.get(f"/repos/{REPO}/tests/{gone.pk}/")
    assert page.status_code == 200
    assert 'id="retention"' in page.content.decode() and "still counts" in page.content.decode()
    assert client.get(f"/repos/{REPO}/failures/").status_code == 200
    assert client.get(f"/repos/{REPO}/").status_code == 200
    runs = client.get("/api/v1/runs/", {"repo": REPO}).json()["results"]
    assert sum(r["results_pruned_at"] is not None for r in runs) == 9
    tests = client.get("/api/v1/tests/", {"repo": REPO}).json()["results"]
    assert {t["name"]: t["status"] for t in tests}["test_gone"] == "flaky"
    # The dashboard's trend is drawn from the snapshots, which outlive the results.
    overview = client.get("/")
    (drawn,) = overview.context["repositories"]
    assert [s.day for s in drawn.days] == [OLD.date(), OLD.date() + timedelta(days=1)]


@pytest.mark.django_db
def test_prune_results_command_dry_run_counts_and_then_removes(tmp_path: Path) -> None:
    history(tmp_path)
    out, err = StringIO(), StringIO()

    call_command("prune_results", "--dry-run", "--json", stdout=out, stderr=err)

    counted = json.loads(out.getvalue())
    assert counted["dry_run"] and counted["runs"] == 9 and counted["results"] == 27
    assert old_results() == 27
    out = StringIO()
    call_command("prune_results", "--days", "90", "--batch-size", "7", stdout=out, stderr=err)
    assert "removed 27 results of 9 runs" in out.getvalue()
    assert f"{REPO}: 9 runs emptied, 27 results removed" in err.getvalue()
    assert old_results() == 0 and recent_results() == 10


def test_beat_runs_the_retention_task_daily_on_the_recompute_queue() -> None:
    from analysis.tasks import enforce_retention_task
    from flakeguard.celery import app

    entry = app.conf.beat_schedule["enforce-retention"]
    assert entry["task"] == enforce_retention_task.name == "analysis.enforce_retention"
    assert entry["options"]["queue"] == "tests-recompute"
