"""Daily numbers per repository: tests by status and CI time lost to flaky failures.

A snapshot of the current day is taken every hour (Beat) and after an import
on the embedded default (``take_snapshots``), replacing the day's earlier
one, so each day keeps the numbers it ended with. CI time lost counts, for
the runs started that day, the results' durations of

- an attempt that failed and that a later attempt of the same run passed
  (the re-run was needed only because of the failure), and
- a job of any other attempt whose failures were all tests now flaky or
  quarantined (it went red for flakiness alone).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection
from django.db.models import Exists, OuterRef

from analysis.models import RepositorySnapshot, TestScore
from analysis.quarantines import active_quarantines
from analysis.scoring import TestStatus
from ingest.models import Repository, TestResult, WorkflowRun, outcome_in_sql


def take_snapshots(*, day: date | None = None) -> int:
    """Snapshot every repository for ``day`` (today, UTC); returns how many were written."""
    day = day or datetime.now(UTC).date()
    return sum(1 for repository in Repository.objects.all() if take_snapshot(repository, day=day))


def take_snapshot(repository: Repository, *, day: date) -> RepositorySnapshot:
    in_quarantine = Exists(active_quarantines().filter(test_id=OuterRef("test_id")))
    scores = TestScore.objects.filter(repository=repository).annotate(q=in_quarantine)
    snapshot, _ = RepositorySnapshot.objects.update_or_create(
        repository=repository,
        day=day,
        defaults={
            "tests": scores.count(),
            "flaky": scores.filter(q=False, verdict=TestStatus.FLAKY).count(),
            "failing": scores.filter(q=False, verdict=TestStatus.FAILING).count(),
            "quarantined": active_quarantines(repository).count(),
            "ci_seconds_lost": ci_seconds_lost(repository, day),
        },
    )
    return snapshot


def ci_seconds_lost(repository: Repository, day: date) -> float:
    """Seconds of CI the day's runs spent on failures that flakiness alone explains."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    runs = list(
        WorkflowRun.objects.filter(
            repository=repository, started_at__gte=start, started_at__lt=start + timedelta(days=1)
        ).values("pk", "run_id", "run_attempt", "job_loads")
    )
    if not runs:
        return 0.0
    attempts: dict[int, list[tuple[int, int, bool]]] = {}
    for run in runs:
        failed = any(failures for _, failures in (run["job_loads"] or {}).values())
        attempts.setdefault(run["run_id"], []).append((run["run_attempt"], run["pk"], failed))
    rerun_away: set[int] = set()
    for tries in attempts.values():
        tries.sort()
        for i, (_, pk, failed) in enumerate(tries):
            if failed and any(not later_failed for _, _, later_failed in tries[i + 1 :]):
                rerun_away.add(pk)
    lost = 0.0
    for run_pk, _job, seconds, failures, flaky_failures in _job_durations([r["pk"] for r in runs]):
        if run_pk in rerun_away or (failures and failures == flaky_failures):
            lost += seconds
    return round(lost, 1)


def _job_durations(run_pks: list[int]) -> list[tuple[int, str, float, int, int]]:
    """(run, job, seconds, failures, failures of tests now flaky or quarantined) per job."""
    results, scores = TestResult._meta.db_table, TestScore._meta.db_table
    quarantines = active_quarantines().model._meta.db_table
    failed = outcome_in_sql(column="r.outcome")
    flaky = (
        f"(s.verdict = '{TestStatus.FLAKY.value}' OR EXISTS (SELECT 1 FROM {quarantines} q "
        "WHERE q.test_id = r.test_id))"
    )
    placeholders = ", ".join(["%s"] * len(run_pks))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT r.run_id, r.job, COALESCE(SUM(r.duration), 0), "
            f"SUM(CASE WHEN {failed} THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN {failed} AND {flaky} THEN 1 ELSE 0 END) "
            f"FROM {results} r LEFT JOIN {scores} s ON s.test_id = r.test_id "
            f"WHERE r.run_id IN ({placeholders}) GROUP BY r.run_id, r.job",
            run_pks,
        )
        return [
            (run_pk, job, float(seconds), int(failures or 0), int(flaky_failures or 0))
            for run_pk, job, seconds, failures, flaky_failures in cursor.fetchall()
        ]


def backfill_snapshots(repository: Repository, *, days: int = 30) -> int:
    """Fill the missing days of the last ``days`` (up to the latest run) from the history.

    Runs keep each day's CI time lost; the flaky count of a past day is the
    tests flaky now whose flaky stretch had begun by then (verdicts of the past
    are not kept, so a test fixed since is not counted).
    """
    latest = WorkflowRun.objects.filter(repository=repository).order_by("-started_at").first()
    if latest is None:
        return 0
    last_day = latest.started_at.astimezone(UTC).date()
    return snapshot_missing_days(
        repository, [last_day - timedelta(days=back) for back in range(days)]
    )


def snapshot_missing_days(repository: Repository, days: Iterable[date]) -> int:
    """Snapshot the days among ``days`` that have none, from the history, as a backfill does.

    Retention calls it before removing a day's results, so that a day no
    snapshot was taken of (history imported in bulk, Beat not running) keeps
    its numbers in the trend once its results are gone.
    """
    wanted = set(days)
    if not wanted:
        return 0
    have = set(
        RepositorySnapshot.objects.filter(repository=repository, day__in=wanted).values_list(
            "day", flat=True
        )
    )
    missing = sorted(wanted - have)
    if not missing:
        return 0
    flaky_since = list(
        TestScore.objects.filter(
            repository=repository, verdict=TestStatus.FLAKY, flaky_since__isnull=False
        ).values_list("flaky_since", flat=True)
    )
    for day in missing:
        end = datetime.combine(day, time.max, tzinfo=UTC)
        RepositorySnapshot.objects.create(
            repository=repository,
            day=day,
            flaky=sum(1 for since in flaky_since if since <= end),
            ci_seconds_lost=ci_seconds_lost(repository, day),
        )
    return len(missing)
