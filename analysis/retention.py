"""Retention: the results of runs older than ``FLAKEGUARD_RETENTION_DAYS`` are removed, in batches.

What goes is the ``TestResult`` rows of the runs started before the cutoff,
and nothing else: the runs stay, marked ``results_pruned_at``, with the job
loads incident detection and the CI-time trend read; so do the tests, their
scores, incidents, quarantines and the daily snapshots (a day that never had
one gets one from its results first). A run not analyzed yet keeps its
results until its analysis has counted them.

Scores after pruning describe the retained history. A rescore, the nightly
one or an analyze job's full look at a test, reads the results that are left,
so counts, rates and evidence cover the last N days, as the dashboard says.
What a demanding user would call a silent loss is handled where it would
happen:

- a test whose results are all gone is not rescored at all (a rescore only
  writes the tests it read results of): it keeps its last verdict, never
  "no data", and that verdict says it counts removed results
  (``components["history_pruned"]``, set here on every test whose results
  go and dropped by the next full look at what is left);
- a test that stays flaky keeps the ``flaky_since`` it had, instead of a date
  that moves forward as its oldest evidence goes
  (``analysis.scores.carry_flaky_since``);
- beyond that, the window is the evidence: a flaky test with no flake left
  in it becomes stable at the next rescore (or new, with fewer than
  ``min_results`` results in it), as a test does whose flakes are that far
  behind it.

Each batch removes at most ``FLAKEGUARD_RETENTION_BATCH_SIZE`` results (by
run, through the index by run, never a table-wide DELETE) in its own
transaction under the repository's analysis lock, so an analysis never sees a
run half gone within one of its transactions, and the runs it empties are
marked in the batch that empties them. The oldest runs go first, and the work
stops after a time budget: what is left is the next day's (or the next
call's), and calling it again when nothing is due changes nothing. Then the
emptied pages' index summaries are reset and the table vacuumed
(``analysis.database``), so new runs reuse the space without widening the
index by run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from analysis.database import (
    delete_results_of_runs,
    flag_scores,
    forget_result_page_summaries,
    lock_repository_analysis,
    vacuum_results,
)
from analysis.scores import HISTORY_PRUNED
from analysis.snapshots import snapshot_missing_days
from ingest import bulk
from ingest.models import Repository, WorkflowRun

logger = logging.getLogger(__name__)

# Seconds of deleting per call at most (a Beat run stops well inside the task's
# soft time limit, leaving room for the vacuum); the rest waits for the next.
TIME_BUDGET_SECONDS = 10 * 60
# Runs read at once, and put in one delete statement at most (their results
# together are at most a batch anyway; this bounds the statement's run list).
_RUNS_PER_READ = 1000
_RUNS_PER_GROUP = 500

ProgressCallback = Callable[[str, int, int], None]  # (repository, runs emptied, results removed)


@dataclass
class RepositoryPruned:
    repo: str
    runs: int = 0
    results: int = 0


@dataclass
class PruneSummary:
    """What one call removed (or, with ``dry_run``, would remove)."""

    days: int
    cutoff: str | None  # ISO time; None when retention is off (days = 0)
    dry_run: bool = False
    runs: int = 0  # runs whose results were all removed (and marked)
    results: int = 0  # results removed; with dry_run, the runs' stored counts
    batches: int = 0  # delete statements, each in its own transaction
    largest_batch: int = 0  # most results one of them removed
    tests_flagged: int = 0  # scores newly marked as counting removed results
    snapshots_written: int = 0  # days that had no snapshot before their results went
    waiting_for_analysis: int = 0  # old runs not analyzed yet, kept for now
    finished: bool = True  # False when the time budget ran out first
    vacuumed: bool = False
    dead_rows_left: int = 0  # removed rows the vacuum could not reclaim yet
    seconds: float = 0.0
    repositories: list[RepositoryPruned] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def enforce_retention() -> dict[str, Any]:
    """Beat's daily run (``analysis.enforce_retention``): prune with the configured settings."""
    return prune_results().as_dict()


def prune_results(
    *,
    days: int | None = None,
    batch_size: int | None = None,
    time_budget: float | None = None,
    dry_run: bool = False,
    repository: Repository | None = None,
    now: datetime | None = None,
    on_progress: ProgressCallback | None = None,
) -> PruneSummary:
    """Remove the results of the analyzed runs started more than ``days`` ago, oldest first.

    ``days`` defaults to ``FLAKEGUARD_RETENTION_DAYS`` (0 keeps everything),
    ``batch_size`` to ``FLAKEGUARD_RETENTION_BATCH_SIZE``; ``repository``
    narrows it to one. With ``dry_run`` nothing is written and the summary
    counts the runs due and their stored results. ``on_progress`` hears of
    each group of runs emptied.
    """
    started = time.monotonic()
    days = settings.FLAKEGUARD_RETENTION_DAYS if days is None else days
    if days <= 0:
        return PruneSummary(days=days, cutoff=None, dry_run=dry_run)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    batch_size = max(1, batch_size or settings.FLAKEGUARD_RETENTION_BATCH_SIZE)
    deadline = started + (default_time_budget() if time_budget is None else time_budget)
    summary = PruneSummary(days=days, cutoff=cutoff.isoformat(), dry_run=dry_run)
    repositories = [repository] if repository else Repository.objects.order_by("pk")
    pages: set[int] = set()
    try:
        for each in repositories:
            pruned = RepositoryPruned(repo=each.full_name)
            if dry_run:
                _count_due(each, cutoff, summary, pruned)
            else:
                _prune_repository(
                    each, cutoff, batch_size, deadline, summary, pruned, pages, on_progress
                )
            if pruned.runs or pruned.results:
                summary.repositories.append(pruned)
            if not summary.finished:
                break
    except BaseException:
        # The batches committed before the failure emptied pages too: reset
        # their summaries, so that no later vacuum hands them to new runs
        # under the old ones. The failure is what the caller hears of.
        with contextlib.suppress(Exception):
            forget_result_page_summaries(pages)
        raise
    if summary.results and not dry_run:
        # After every delete has committed: a summary taken while a deleted
        # row was still visible to some transaction would keep its run id.
        forget_result_page_summaries(pages)
        left = vacuum_results()
        summary.vacuumed, summary.dead_rows_left = left is not None, left or 0
        if left:
            # A transaction older than the deletes kept rows the vacuum could not
            # remove, and it summarized their ranges with them: reset those again,
            # for a later vacuum to summarize once the rows are gone.
            forget_result_page_summaries(pages)
    summary.seconds = round(time.monotonic() - started, 3)
    logger.info(
        "retention (%s days, before %s): %s results of %s runs removed in %s batches, "
        "%s runs waiting for analysis, %s, %.1fs",
        days,
        summary.cutoff,
        summary.results,
        summary.runs,
        summary.batches,
        summary.waiting_for_analysis,
        "finished" if summary.finished else "stopped at the time budget",
        summary.seconds,
    )
    return summary


def default_time_budget() -> float:
    """``TIME_BUDGET_SECONDS``, or half the task's soft time limit when that is shorter."""
    soft_limit = getattr(settings, "CELERY_TASK_SOFT_TIME_LIMIT", None)
    return min(TIME_BUDGET_SECONDS, soft_limit / 2) if soft_limit else TIME_BUDGET_SECONDS


def _due(repository: Repository, cutoff: datetime):
    """The repository's runs before the cutoff whose results are still stored."""
    return WorkflowRun.objects.filter(
        repository=repository, started_at__lt=cutoff, results_pruned_at__isnull=True
    )


def _count_due(
    repository: Repository, cutoff: datetime, summary: PruneSummary, pruned: RepositoryPruned
) -> None:
    due = _due(repository, cutoff)
    summary.waiting_for_analysis += due.filter(analyzed_at__isnull=True).count()
    counted = due.filter(analyzed_at__isnull=False).aggregate(
        runs=Count("pk"), results=Sum("results_count")
    )
    pruned.runs, pruned.results = counted["runs"], counted["results"] or 0
    summary.runs += pruned.runs
    summary.results += pruned.results


def _prune_repository(
    repository: Repository,
    cutoff: datetime,
    batch_size: int,
    deadline: float,
    summary: PruneSummary,
    pruned: RepositoryPruned,
    pages: set[int],
    on_progress: ProgressCallback | None,
) -> None:
    due = _due(repository, cutoff)
    summary.waiting_for_analysis += due.filter(analyzed_at__isnull=True).count()
    ready = due.filter(analyzed_at__isnull=False).order_by("started_at", "pk")
    while True:
        # Read again each time: the runs emptied meanwhile are marked, so they
        # drop out, and a run stopped half way by the budget comes back first.
        chunk = list(
            ready.values_list("pk", "started_at", "results_count", "job_loads")[:_RUNS_PER_READ]
        )
        if not chunk:
            return
        summary.snapshots_written += snapshot_missing_days(
            repository, {started_at.astimezone(UTC).date() for _, started_at, _, _ in chunk}
        )
        _keep_job_loads([pk for pk, _, _, loads in chunk if loads is None])
        for group in _groups([(pk, count) for pk, _, count, _ in chunk], batch_size):
            if not _prune_runs(repository, group, batch_size, deadline, summary, pruned, pages):
                summary.finished = False
                return
            if on_progress is not None:
                on_progress(repository.full_name, pruned.runs, pruned.results)


def _groups(runs: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Consecutive runs whose stored results add up to a batch at most (a larger run alone)."""
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for pk, results in runs:
        if current and (size + results > batch_size or len(current) >= _RUNS_PER_GROUP):
            groups.append(current)
            current, size = [], 0
        current.append(pk)
        size += results
    if current:
        groups.append(current)
    return groups


def _prune_runs(
    repository: Repository,
    run_pks: list[int],
    batch_size: int,
    deadline: float,
    summary: PruneSummary,
    pruned: RepositoryPruned,
    pages: set[int],
) -> bool:
    """Remove these runs' results a batch at a time and mark them; False if the budget ran out."""
    while True:
        if time.monotonic() > deadline:
            return False
        with transaction.atomic():
            lock_repository_analysis(repository.pk)
            deleted = delete_results_of_runs(run_pks, limit=batch_size)
            summary.tests_flagged += flag_scores(sorted(deleted.tests), component=HISTORY_PRUNED)
            # Fewer than a batch: the statement saw every row the runs had left.
            emptied = deleted.rows < batch_size
            if emptied:
                WorkflowRun.objects.filter(pk__in=run_pks).update(results_pruned_at=timezone.now())
        summary.batches += 1
        summary.largest_batch = max(summary.largest_batch, deleted.rows)
        summary.results += deleted.rows
        pruned.results += deleted.rows
        pages.update(deleted.pages)
        if emptied:
            summary.runs += len(run_pks)
            pruned.runs += len(run_pks)
            return True


def _keep_job_loads(run_pks: list[int]) -> None:
    """Count and keep the job loads of runs stored before they were counted at import.

    ``analysis.loading`` counts those from the results each time; once the
    results are gone, incident detection would have nothing to count.
    """
    if not run_pks:
        return
    loads = bulk.count_job_loads(run_pks)
    fingerprints = bulk.count_job_fingerprints(run_pks)
    with transaction.atomic():
        for pk in run_pks:
            WorkflowRun.objects.filter(pk=pk, job_loads__isnull=True).update(
                job_loads=loads.get(pk, {}), job_fingerprints=fingerprints.get(pk, {})
            )
