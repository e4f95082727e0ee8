"""Daily snapshots: counts by status and the CI time flaky failures cost."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from analysis.models import RepositorySnapshot
from analysis.services import recompute_repository
from analysis.snapshots import backfill_snapshots, ci_seconds_lost, take_snapshot
from ingest.models import Repository
from ingest.runs import RunFile, RunInfo
from ingest.store import store_run
from tests.ingest.junit_samples import write

DAY = datetime(2026, 11, 20, 9, tzinfo=UTC)


def report(durations: dict[str, tuple[str, float]]) -> bytes:
    cases = []
    for name, (outcome, seconds) in durations.items():
        body = '<failure message="boom">boom</failure>' if outcome == "failed" else ""
        cases.append(
            f'<testcase classname="tests.t" name="{name}" time="{seconds}">{body}</testcase>'
        )
    return f"<testsuite>{''.join(cases)}</testsuite>".encode()


def run(tmp_path: Path, run_id: int, attempt: int, job: str, outcomes, *, at=DAY) -> None:
    path = write(tmp_path / f"{run_id}-{attempt}-{job}.xml", report(outcomes))
    store_run(
        run=RunInfo(repo="acme/lost", run_id=run_id, run_attempt=attempt, sha=f"{run_id:040x}",
                    branch="main", event="push", started_at=at + timedelta(minutes=attempt)),
        files=[RunFile(path=path, label=job)],
    )  # fmt: skip


@pytest.mark.django_db
def test_ci_time_lost_counts_re_run_attempts_and_jobs_red_for_flakes_alone(tmp_path) -> None:
    # A flaky test: it failed and passed on other commits before.
    for n in range(1, 9):
        run(tmp_path, n, 1, "linux", {"test_flaky": ("failed" if n % 3 == 0 else "passed", 1.0),
                                      "test_ok": ("passed", 1.0)}, at=DAY - timedelta(days=3))  # fmt: skip
    # The day: run 20 failed by the flake and passed on its re-run (12 s lost);
    # run 21 went red for the flake alone and was not re-run (7 s lost);
    # run 22 failed a test that is not flaky (nothing lost to flakiness).
    run(tmp_path, 20, 1, "linux", {"test_flaky": ("failed", 2.0), "test_ok": ("passed", 10.0)})
    run(tmp_path, 20, 2, "linux", {"test_flaky": ("passed", 2.0), "test_ok": ("passed", 10.0)})
    run(tmp_path, 21, 1, "linux", {"test_flaky": ("failed", 3.0), "test_ok": ("passed", 4.0)})
    run(tmp_path, 22, 1, "linux", {"test_new": ("failed", 5.0), "test_ok": ("passed", 4.0)})
    repository = Repository.objects.get(full_name="acme/lost")
    recompute_repository(repository=repository)

    assert ci_seconds_lost(repository, DAY.date()) == 12.0 + 7.0
    snapshot = take_snapshot(repository, day=DAY.date())
    assert (snapshot.flaky, snapshot.tests, snapshot.ci_seconds_lost) == (1, 3, 19.0)
    again = take_snapshot(repository, day=DAY.date())  # the day's snapshot is restated
    assert again.pk == snapshot.pk and RepositorySnapshot.objects.count() == 1

    filled = backfill_snapshots(repository, days=5)
    days = dict(RepositorySnapshot.objects.values_list("day", "flaky"))
    assert filled == 4 and len(days) == 5
    assert min(days) == date(2026, 11, 16)
