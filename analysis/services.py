"""Analysis services: score the tests of one run, rescore a repository, change its settings.

Every write to the scores of a repository happens under its analysis lock
(``analysis.database``), so analyze jobs of runs stored at the same time, and a
recompute running beside them, take turns and lose no update. A run reaches
the scores exactly once: its ``analyzed_at`` is set in the transaction that
applies it, and readers leave out runs that are not analyzed yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from analysis import loading, metrics
from analysis.announcements import announce_verdicts_changed
from analysis.database import (
    allow_large_aggregates,
    apply_quiet_tests_in_bulk,
    lock_repository_analysis,
)
from analysis.incidents import record_incidents
from analysis.models import ScoringConfig, TestScore
from analysis.scores import save_verdicts, verdict_of
from analysis.scoring import (
    HistoryContext,
    ResultGroup,
    ScoringSettings,
    TestStatus,
    Verdict,
    advance_clean,
    quiet_tally,
    quiet_verdict,
    score_test,
)
from analysis.tallies import (
    current_mark,
    forget_settled,
    forget_tally,
    record_tally,
    runs_pending,
    settle_range,
    settle_tests,
)
from ingest.models import Repository, TestCase, TestResult, WorkflowRun, outcome_in_sql
from jobs.dispatch import enqueue_job
from jobs.errors import PermanentJobError
from jobs.models import Job, JobKind, JobState
from jobs.runner import checkpoint

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]  # (tests done, tests in all)
BatchCallback = Callable[[int, int], None]  # (batches applied, batches in all)

# Above any test pk: the upper bound of a run's last batch.
_LAST_TEST = 2**63 - 1


def scoring_settings_for(repository: Repository) -> ScoringSettings:
    config = ScoringConfig.objects.filter(repository=repository).first()
    return config.settings() if config else ScoringSettings()


# --- runs-analyze -----------------------------------------------------------


# Tests per batch when a run is applied one test at a time (SQLite, or bulk=False).
ONE_BY_ONE_BATCH_TESTS = 10_000


def analyze_run_job(job: Job) -> dict[str, Any]:
    """Job body of ``analyze_run``."""
    try:
        run_pk = int(job.payload["run_pk"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentJobError(f"malformed analyze payload: {exc!r}") from exc
    return analyze_run(run_pk=run_pk, job=job)


def analyze_run(
    *,
    run_pk: int,
    job: Job | None = None,
    bulk: bool | None = None,
    batch_tests: int | None = None,
    on_batch: BatchCallback | None = None,
) -> dict[str, Any]:
    """Bring the scores of the tests in this run up to date; cost follows the run's size.

    Tests that only passed (or failed in an outage) and have nothing pending
    are advanced from their stored state; the others, the few that failed or
    were waiting on what came next, are rescored from their history. A
    backlog of unanalyzed runs is taken in by one rescore instead, which
    checkpoints into ``job``: the runs it marks analyzed are recorded with
    its progress, so a crashed attempt resumes the rescore instead of finding
    its runs "already analyzed" and leaving their tests unscored.

    A run of more than ``batch_tests`` tests is applied in batches of tests,
    each in its own transaction under the analysis lock, which other analyses
    take in between. Each batch records how far the run has reached
    (``WorkflowRun.analyzed_upto_test``), so every reader counts the run for
    exactly the tests it has been applied to, and a crashed attempt resumes
    after the last batch it committed.

    On PostgreSQL (``bulk``, by default) the tests with no evidence that only
    passed are applied by a few set-based statements, so the cost of a large
    run is its few eventful tests, not its many quiet ones.
    """
    started = time.perf_counter()
    run = WorkflowRun.objects.select_related("repository").filter(pk=run_pk).first()
    if run is None:
        raise PermanentJobError(f"run {run_pk} does not exist")
    resuming = job is not None and "cursor" in job.progress
    if resuming or (
        run.analyzed_at is None
        and run.analyzed_upto_test is None
        and _backlog(run.repository) >= django_settings.FLAKEGUARD_ANALYSIS_BACKLOG
    ):
        # After an outage, a backfill or a bulk import, one full rescore costs
        # less than many runs applied one by one; it takes them all in.
        summary = recompute_repository(repository=run.repository, job=job)
        with transaction.atomic():
            _announce(run)  # this run's commit, as for any other run
        return {"analyzed": True, "run_pk": run_pk, "recomputed": summary}
    repository = run.repository
    use_bulk = bulk if bulk is not None else connection.vendor == "postgresql"
    batch_tests = batch_tests or django_settings.FLAKEGUARD_ANALYZE_BATCH_TESTS
    if not use_bulk:
        # One by one, every test of a batch is loaded with its score: smaller
        # batches keep a run of a million tests in a few hundred MB.
        batch_tests = min(batch_tests, ONE_BY_ONE_BATCH_TESTS)
    bounds = _batch_bounds(run, batch_tests)
    totals = _BatchCounts()
    applied = 0
    for number, upto in enumerate(bounds, start=1):
        with transaction.atomic():
            lock_repository_analysis(repository.pk)
            # Re-read under the lock: another worker may have applied it (or
            # part of it) meanwhile, or a recompute taken it in.
            analyzed_at, after = (
                WorkflowRun.objects.filter(pk=run_pk)
                .values_list("analyzed_at", "analyzed_upto_test")
                .get()
            )
            if analyzed_at is not None:
                if applied == 0:
                    # Taken in by a rescore (a backlog) or by a duplicate delivery:
                    # its commit still hears of it (once: the announcement is
                    # keyed by the run), or a backlog would leave commits without
                    # their check runs.
                    _announce(run)
                    return {"analyzed": False, "reason": "already analyzed", "run_pk": run_pk}
                break
            if upto is not None and after is not None and upto <= after:
                continue  # committed by an earlier attempt
            context = _apply_batch(
                run,
                after=after or 0,
                upto=upto,
                use_bulk=use_bulk,
                totals=totals,
                expected_tests=min(run.results_count, batch_tests),
            )
            totals.ranges.append((after or 0, _LAST_TEST if upto is None else upto))
            applied += 1
            if upto is None:
                record_incidents(
                    repository=repository,
                    run_pks=[run_pk],
                    context=context,
                    settings=scoring_settings_for(repository),
                )
                WorkflowRun.objects.filter(pk=run_pk).update(
                    analyzed_at=timezone.now(), analyzed_upto_test=None
                )
                _announce(run)
            else:
                WorkflowRun.objects.filter(pk=run_pk).update(analyzed_upto_test=upto)
            if job is not None and len(bounds) > 1:
                checkpoint(job, {"batches_done": number, "batches": len(bounds)})
        if on_batch is not None:
            on_batch(number, len(bounds))
    if use_bulk and runs_pending(repository.pk) >= django_settings.FLAKEGUARD_TALLY_SETTLE_AFTER:
        with transaction.atomic():
            enqueue_settle(repository)
    seconds = time.perf_counter() - started
    tallied = totals.tallied(run, len(bounds))
    logger.info(
        "%s run %s attempt %s analyzed: %s tests (%s rescored, %s tallied at rest) in %s batches, "
        "%s flaky among them, %.2fs",
        repository.full_name,
        run.run_id,
        run.run_attempt,
        totals.tests + tallied,
        totals.rescored,
        tallied,
        applied,
        totals.flaky,
        seconds,
    )
    metrics.TESTS_ANALYZED.labels(mode="run").inc(totals.tests + tallied)
    return {
        "analyzed": True,
        "run_pk": run_pk,
        # A test at rest counts once per result (two passes in two jobs: two).
        "tests": totals.tests + tallied,
        "tallied": tallied,
        "rescored": totals.rescored,
        "advanced": totals.advanced,
        "in_bulk": totals.in_bulk,
        "flaky_in_run": totals.flaky,
        "batches": applied,
        "seconds": round(seconds, 3),
    }


@dataclass
class _BatchCounts:
    tests: int = 0
    rescored: int = 0
    advanced: int = 0
    in_bulk: int = 0
    flaky: int = 0
    looked_at: int = 0  # results of the run the bulk statements looked at
    tallying: bool = False
    ranges: list[tuple[int, int]] = field(default_factory=list)  # (after, upto] applied

    def tallied(self, run: WorkflowRun, batches: int) -> int:
        """The results of the batches applied counted by tallies alone (tests at rest)."""
        if not self.tallying:
            return 0
        if len(self.ranges) == batches:
            return max(0, run.results_count - self.looked_at)
        # Resumed after a crash: only the batches applied now.
        table = TestResult._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT COUNT(*) FROM {table} WHERE run_id = %s AND ("
                + " OR ".join(["(test_id > %s AND test_id <= %s)"] * len(self.ranges))
                + ")",
                [run.pk, *(bound for pair in self.ranges for bound in pair)],
            )
            return max(0, int(cursor.fetchone()[0]) - self.looked_at)


def _batch_bounds(run: WorkflowRun, batch_tests: int) -> list[int | None]:
    """The last test pk of each batch of the run's tests, in order; None closes the run.

    A run of up to ``batch_tests`` results is one batch. The bounds follow
    from the stored results alone, so an attempt resuming after a crash
    finds the same ones.
    """
    if run.results_count <= batch_tests:
        return [None]
    table = TestResult._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT test_id FROM (SELECT test_id, ROW_NUMBER() OVER (ORDER BY test_id) AS n "
            f"FROM (SELECT DISTINCT test_id FROM {table} WHERE run_id = %s) AS tests) AS numbered "
            f"WHERE n %% %s = 0 ORDER BY test_id",
            [run.pk, batch_tests],
        )
        return [*(test_pk for (test_pk,) in cursor.fetchall()), None]


def _apply_batch(
    run: WorkflowRun,
    *,
    after: int,
    upto: int | None,
    use_bulk: bool,
    totals: _BatchCounts,
    expected_tests: int = 0,
) -> HistoryContext:
    """Apply the run to its tests with pk in (after, upto], about ``expected_tests`` of
    them; the caller holds the lock."""
    repository = run.repository
    run_pk = run.pk
    last = _LAST_TEST if upto is None else upto
    settings = scoring_settings_for(repository)
    context = loading.load_context(repository, including=run_pk)
    run_meta = context.runs[run_pk]
    # A pass on a commit where the test failed before makes that commit
    # "failed and passed": new evidence, so those tests get a full look.
    failed_on_commit = _tests_failed_on_commit(run, after=after, upto=last)
    in_bulk = 0
    only: list[int] | None = None
    if use_bulk:
        # The tests at rest that only passed are counted by a tally and not
        # written; the few others with no evidence that only passed are
        # applied in SQL, and the rest below, one by one.
        allow_large_aggregates()
        tally = record_tally(
            repository_id=repository.pk, run_pk=run_pk, after_test=after, upto_test=last
        )
        new_tests = (
            (run.new_tests_from, run.new_tests_upto) if run.new_tests_from is not None else None
        )
        advanced_in_bulk, inserted, only, looked_at = apply_quiet_tests_in_bulk(
            run_pk=run_pk,
            repository_id=repository.pk,
            after_test=after,
            upto_test=last,
            branch=run.branch,
            started_at=run.started_at,
            failed_on_commit=sorted(failed_on_commit),
            new_tests=new_tests,
            tally=tally,
            min_results=settings.min_results,
            min_half_life=settings.min_half_life,
            expected_tests=expected_tests,
        )
        in_bulk = advanced_in_bulk + inserted
        if after == 0 and upto is None and looked_at >= run.results_count:
            forget_tally(tally)  # the whole run was looked at: nothing to count
        totals.looked_at += looked_at
        totals.tallying = True
    in_run = _results_of_run(run_pk, after=after, upto=last, only=only)
    if not use_bulk:
        # Every test of the batch is written below: what tallies counted for
        # them goes into their scores first.
        settle_tests(repository.pk, list(in_run))
    stored = {score.test_id: score for score in TestScore.objects.filter(test_id__in=list(in_run))}
    advanced: list[tuple[int, Verdict]] = []
    rescore: list[int] = []
    for test_pk, results in in_run.items():
        score = stored.get(test_pk)
        quiet = quiet_tally(results, context, settings)
        if (
            score is None
            or score.pending
            or run.branch in score.components.get("pending_branches", ())
            or quiet is None
            or test_pk in failed_on_commit
            # A run older than the test's last failure (a backfill, a late
            # re-run attempt) lands inside the evidence, not after it.
            or (
                score.last_failure_at is not None
                and score.last_failure_at.timestamp() > run_meta.started_at
            )
        ):
            rescore.append(test_pk)
            continue
        advanced.append(
            (
                test_pk,
                advance_clean(
                    verdict_of(score),
                    passes=quiet.passes,
                    skipped=quiet.skipped,
                    ignored_failures=quiet.ignored_failures,
                    discounted=quiet.discounted,
                    latest_result_at=run_meta.started_iso,
                    settings=settings,
                ),
            )
        )
    rescored = [
        (test_pk, score_test(rows, context, settings))
        for test_pk, rows in loading.iter_histories(rescore, context=context)
    ]
    save_verdicts(repository.pk, [*advanced, *rescored])
    totals.tests += len(in_run) + in_bulk
    totals.rescored += len(rescored)
    totals.advanced += len(advanced) + in_bulk
    totals.in_bulk += in_bulk
    totals.flaky += sum(v.status == TestStatus.FLAKY for _, v in [*advanced, *rescored])
    return context


def _announce(run: WorkflowRun) -> None:
    announce_verdicts_changed(
        repository_id=run.repository_id, head_sha=run.sha, cause=f"run:{run.pk}"
    )


def _backlog(repository: Repository) -> int:
    """Runs of the repository stored but not analyzed yet."""
    return WorkflowRun.objects.filter(repository=repository, analyzed_at__isnull=True).count()


def _results_of_run(
    run_pk: int, *, after: int, upto: int, only: list[int] | None = None
) -> dict[int, list[ResultGroup]]:
    """{test pk: its results in the run, one group each} of the run's tests with pk in
    (after, upto] (and among ``only``)."""
    table = TestResult._meta.db_table
    tests: dict[int, list[ResultGroup]] = {}
    if only is not None and not only:
        return tests
    if only is None:
        sql = (
            f"SELECT test_id, outcome, job, flaky_reruns FROM {table} "
            "WHERE run_id = %s AND test_id > %s AND test_id <= %s"
        )
        params: list[object] = [run_pk, after, upto]
    else:
        # One primary-key probe per test (OFFSET 0 keeps it one): the
        # statistics of a run just stored say it has no rows, so a plain
        # filter or join reads every page of the run through its BRIN index.
        sql = (
            "SELECT o.test_id, r.outcome, r.job, r.flaky_reruns "
            "FROM unnest(%s::bigint[]) AS o(test_id) CROSS JOIN LATERAL ("
            f"SELECT outcome, job, flaky_reruns FROM {table} "
            "WHERE test_id = o.test_id AND run_id = %s OFFSET 0) AS r"
        )
        params = [[pk for pk in only if after < pk <= upto], run_pk]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for test_pk, outcome, job, reruns in cursor.fetchall():
            tests.setdefault(test_pk, []).append(ResultGroup(outcome, job, run_pk, 1, reruns))
    return tests


def _tests_failed_on_commit(run: WorkflowRun, *, after: int, upto: int) -> set[int]:
    """Tests with pk in (after, upto] that failed in the other runs of this run's commit
    already in the scores (a run being applied in batches counts as one)."""
    others = list(
        WorkflowRun.objects.filter(repository_id=run.repository_id, sha=run.sha)
        .filter(Q(analyzed_at__isnull=False) | Q(analyzed_upto_test__isnull=False))
        .exclude(pk=run.pk)
        .values_list("pk", flat=True)
    )
    if not others:
        return set()
    table = TestResult._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT test_id FROM {table} WHERE run_id IN "
            f"({', '.join(['%s'] * len(others))}) AND {outcome_in_sql()} "
            "AND test_id > %s AND test_id <= %s",
            [*others, after, upto],
        )
        return {test_pk for (test_pk,) in cursor.fetchall()}


# --- tests-recompute --------------------------------------------------------


def _repository_of(job: Job, kind: str) -> Repository:
    """The repository a repository-wide job's payload names; PermanentJobError if none."""
    try:
        return Repository.objects.get(pk=int(job.payload["repository_id"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentJobError(f"malformed {kind} payload: {exc!r}") from exc
    except Repository.DoesNotExist as exc:
        raise PermanentJobError(f"repository {job.payload['repository_id']} is gone") from exc


def _tests_after(repository: Repository, after: int, batch_size: int) -> list[int]:
    """The next ``batch_size`` test pks of the repository after ``after``, in order."""
    return list(
        TestCase.objects.filter(repository=repository, pk__gt=after)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )


def recompute_repository_job(job: Job) -> dict[str, Any]:
    """Job body of ``recompute_repo``: resumes from the job's saved progress."""
    repository = _repository_of(job, "recompute")
    return recompute_repository(repository=repository, job=job)


def recompute_repository(
    *,
    repository: Repository,
    job: Job | None = None,
    batch_size: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Rescore every test of the repository from its whole history, batch by batch.

    Each batch commits with the job's progress, so a recompute interrupted by a
    crash or a restart carries on from the last batch. Runs stored but not yet
    analyzed are taken in at the start (their analyze jobs then have nothing to do).
    """
    started = time.perf_counter()
    batch_size = batch_size or django_settings.FLAKEGUARD_RECOMPUTE_BATCH_SIZE
    progress: dict[str, Any] = dict(job.progress) if job else {}
    if "cursor" not in progress:
        with transaction.atomic():
            lock_repository_analysis(repository.pk)
            # A run half applied in batches is taken in whole: its own job
            # then finds it analyzed and stops.
            taken_in = WorkflowRun.objects.filter(
                repository=repository, analyzed_at__isnull=True
            ).update(analyzed_at=timezone.now(), analyzed_upto_test=None)
            progress = {
                "cursor": 0,
                "done": 0,
                "total": TestCase.objects.filter(repository=repository).count(),
                "flaky": 0,
                "runs_taken_in": taken_in,
            }
            if job:
                checkpoint(job, progress)
    settings = scoring_settings_for(repository)
    report = on_progress or (lambda done, total: None)
    report(progress["done"], progress["total"])
    while True:
        with transaction.atomic():
            lock_repository_analysis(repository.pk)
            allow_large_aggregates()
            test_pks = _tests_after(repository, progress["cursor"], batch_size)
            if not test_pks:
                break
            verdicts = _score_batch(repository, test_pks, settings)
            save_verdicts(repository.pk, verdicts)
            progress = {
                **progress,
                "cursor": test_pks[-1],
                "done": progress["done"] + len(test_pks),
                "total": max(progress["total"], progress["done"] + len(test_pks)),
                "flaky": progress["flaky"]
                + sum(1 for _, v in verdicts if v.status == TestStatus.FLAKY),
            }
            if job:
                checkpoint(job, progress)
        report(progress["done"], progress["total"])
    # Scores rewritten by the batches above count the tallies of their time;
    # those recorded since are folded in now.
    settle_tallies(repository)
    # The job's usual failure counts moved with the history: every run's
    # incidents are restated (idempotent, so a resumed recompute repeats it).
    with transaction.atomic():
        lock_repository_analysis(repository.pk)
        incidents = record_incidents(
            repository=repository,
            run_pks=WorkflowRun.objects.filter(
                repository=repository, analyzed_at__isnull=False
            ).values_list("pk", flat=True),
            settings=settings,
        )
    seconds = time.perf_counter() - started
    logger.info(
        "%s recomputed: %s tests, %s flaky, %s incidents, %.1fs",
        repository.full_name,
        progress["done"],
        progress["flaky"],
        incidents,
        seconds,
    )
    metrics.TESTS_ANALYZED.labels(mode="recompute").inc(progress["done"])
    return {
        "repository": repository.full_name,
        "tests": progress["done"],
        "flaky": progress["flaky"],
        "incidents": incidents,
        "runs_taken_in": progress.get("runs_taken_in", 0),
        "seconds": round(seconds, 3),
    }


def _score_batch(
    repository: Repository, test_pks: list[int], settings: ScoringSettings
) -> list[tuple[int, Verdict]]:
    """Verdicts for a batch of tests: a summary pass for all, full histories for the few that failed."""
    context = loading.load_context(repository)
    summaries = loading.summarize_tests(context, test_pks[0], test_pks[-1])
    verdicts: list[tuple[int, Verdict]] = []
    full: list[int] = []
    for test_pk, summary in summaries.items():
        quiet = quiet_tally(summary.groups, context, settings)
        if quiet is None:
            full.append(test_pk)
            continue
        latest = context.runs.get(summary.latest_run)
        verdicts.append(
            (
                test_pk,
                quiet_verdict(
                    results=quiet.results,
                    failures=quiet.ignored_failures,
                    skipped=quiet.skipped,
                    discounted=quiet.discounted,
                    latest_result_at=latest.started_iso if latest else None,
                    settings=settings,
                ),
            )
        )
    for test_pk, rows in loading.iter_histories(full, context=context):
        verdicts.append((test_pk, score_test(rows, context, settings)))
    return verdicts


# --- tallies ----------------------------------------------------------------


def settle_tallies_job(job: Job) -> dict[str, Any]:
    """Job body of ``settle_tallies``."""
    repository = _repository_of(job, "settle")
    return settle_tallies(repository)


def settle_tallies(repository: Repository, *, batch_size: int = 100_000) -> dict[str, Any]:
    """Fold every pending tally of the repository into its scores, then delete them.

    Batch by batch of tests, each under the analysis lock in its own
    transaction; tallies recorded meanwhile stay pending for the next settle.
    """
    started = time.perf_counter()
    mark = current_mark(repository.pk)
    moved = settled = 0
    if mark:
        cursor = 0
        while True:
            with transaction.atomic():
                lock_repository_analysis(repository.pk)
                allow_large_aggregates()
                test_pks = _tests_after(repository, cursor, batch_size)
                if not test_pks:
                    break
                moved += settle_range(
                    repository.pk, after_test=cursor, upto_test=test_pks[-1], mark=mark
                )
                cursor = test_pks[-1]
        with transaction.atomic():
            lock_repository_analysis(repository.pk)
            settled = forget_settled(repository.pk, mark=mark)
    seconds = time.perf_counter() - started
    if settled:
        logger.info(
            "%s: %s tallies settled into %s scores, %.2fs",
            repository.full_name,
            settled,
            moved,
            seconds,
        )
    return {"tallies": settled, "scores": moved, "seconds": round(seconds, 3)}


def enqueue_settle(repository: Repository) -> tuple[Job, bool]:
    """A settle job for the repository, unless one is already waiting."""
    existing = Job.objects.filter(
        kind=JobKind.SETTLE_TALLIES,
        state__in=[JobState.PENDING, JobState.RUNNING],
        payload__repository_id=repository.pk,
    ).first()
    if existing is not None:
        return existing, False
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S.%f")
    return enqueue_job(
        kind=JobKind.SETTLE_TALLIES,
        dedup_key=f"settle:{repository.pk}:{stamp}",
        payload={"repository_id": repository.pk},
    )


# --- enqueueing -------------------------------------------------------------


def enqueue_recompute(*, repository: Repository, reason: str) -> tuple[Job, bool]:
    """A recompute job for the repository, unless one is already waiting or running."""
    with transaction.atomic():
        # A row lock, not the analysis lock: enqueueing need not wait for an analysis.
        Repository.objects.select_for_update().filter(pk=repository.pk).first()
        existing = (
            Job.objects.filter(
                kind=JobKind.RECOMPUTE_REPO,
                state__in=[JobState.PENDING, JobState.RUNNING],
                payload__repository_id=repository.pk,
            )
            .order_by("pk")
            .first()
        )
        if existing is not None:
            return existing, False
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S.%f")
        return enqueue_job(
            kind=JobKind.RECOMPUTE_REPO,
            dedup_key=f"recompute:{repository.pk}:{stamp}",
            payload={"repository_id": repository.pk, "reason": reason},
        )


def schedule_recomputes() -> int:
    """Beat's nightly fan-out: one recompute job per repository."""
    return sum(
        enqueue_recompute(repository=repository, reason="nightly")[1]
        for repository in Repository.objects.all()
    )


def update_scoring_settings(*, repository: Repository, overrides: dict[str, Any]) -> Job:
    """Change a repository's scoring settings and rescore it with them."""
    ScoringSettings.from_json(overrides)  # ValueError names the bad key
    with transaction.atomic():
        ScoringConfig.objects.update_or_create(
            repository=repository, defaults={"overrides": overrides}
        )
        job, _ = enqueue_recompute(repository=repository, reason="scoring settings changed")
    return job
