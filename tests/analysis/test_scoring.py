"""The pure scoring core on hand-built histories: one test per case the classification must get right."""

from __future__ import annotations

import random

import pytest

from analysis.scoring import (
    HistoryContext,
    ResultGroup,
    ScoringSettings,
    TestStatus,
    Verdict,
    advance_clean,
    describe_event,
    incident_at,
    list_incidents,
    quiet_tally,
    quiet_verdict,
    score_test,
)
from tests.analysis.histories import History, random_flake

# --- what must not be called flaky -------------------------------------------


def test_broken_on_main_until_its_fix_is_failing_then_stable_never_flaky() -> None:
    history = History()
    history.runs_of("p" * 40)
    history.runs_of("f" * 8)  # a commit breaks it; every commit fails until the fix
    broken = history.verdict()
    assert broken.status == TestStatus.FAILING
    assert broken.components["failing"][0]["commits"] == 8
    history.runs_of("p" * 40)
    fixed = history.verdict()
    assert fixed.status == TestStatus.STABLE
    assert fixed.score == 0.0
    assert fixed.components["isolated"]["events"] == 0


def test_broken_on_main_while_pull_requests_pass_in_between_is_not_flaky() -> None:
    # Runs of feature branches that are not rebased interleave with main's
    # broken commits: isolated in time order, but a streak along main.
    history = History()
    history.runs_of("p" * 30)
    for _ in range(6):
        history.run("f")
        history.run("p", branch="feature/x", event="pull_request")
    history.runs_of("p" * 30)
    assert history.verdict().status == TestStatus.STABLE


def test_failures_on_one_pull_request_branch_only_are_not_flaky() -> None:
    history = History()
    history.runs_of("p" * 30)
    for mark in "fff":  # three commits of the branch fail, the fourth fixes it
        history.run(mark, branch="feature/cart", event="pull_request")
        history.run("p")  # main and other work carry on passing
    history.run("p", branch="feature/cart", event="pull_request")
    history.runs_of("p" * 30)
    verdict = history.verdict()
    assert verdict.status == TestStatus.STABLE
    assert verdict.components["branches_failed"]["names"] == ["feature/cart"]


def test_deterministic_failure_in_one_matrix_job_only_is_failing_not_flaky() -> None:
    history = History()
    for _ in range(30):
        history.run({"linux": "p", "windows": "p"})
    for _ in range(20):
        history.run({"linux": "p", "windows": "f"})
    verdict = history.verdict()
    assert verdict.status == TestStatus.FAILING
    assert verdict.components["failing"][0]["job"] == "windows"
    assert not verdict.is_flaky


def test_stable_test_caught_in_an_outage_is_not_flaky_even_when_the_rerun_passes() -> None:
    history = History()
    history.runs_of("p" * 30)
    outage = history.run("e", other_failures=140)  # 141 of 200 tests errored at once
    history.run("p", sha=outage.sha, run_id=outage.run_id, attempt=2)
    history.runs_of("p" * 30)
    verdict = history.verdict()
    assert verdict.status == TestStatus.STABLE
    assert verdict.score == 0.0
    assert verdict.components["outage_failures"] == 1


def test_a_few_other_failures_in_the_job_only_discount_the_evidence() -> None:
    alone, crowded = History(), History()
    for history, others in ((alone, 0), (crowded, 6)):
        history.runs_of("p" * 20)
        failed = history.run("f", other_failures=others)
        history.run("p", sha=failed.sha, run_id=failed.run_id, attempt=2)
    assert alone.verdict().components["same_commit"]["evidence"] == pytest.approx(1.0)
    assert 0 < crowded.verdict().components["same_commit"]["evidence"] < 0.5


# --- infrastructure incidents -----------------------------------------------------


def test_a_job_attempt_where_a_quarter_of_the_tests_failed_explains_each_failure() -> None:
    # A runner died: 10 of a job's 40 tests errored, mostly with one error, and the
    # re-run passed. Too few for the outage discount alone; a share of the job.
    history = History(suite=40)
    history.runs_of("p" * 30)
    dead = history.run(
        "e", other_failures=9, fingerprint="refused", fingerprints=(("refused", 8), ("pipe", 2))
    )
    history.run("p", sha=dead.sha, run_id=dead.run_id, attempt=2)
    history.runs_of("p" * 10)
    verdict = history.verdict()
    assert verdict.status == TestStatus.STABLE
    assert verdict.score == 0.0
    assert verdict.components["same_commit"]["events"] == 0
    assert verdict.components["outage_failures"] == 1
    (note,) = verdict.evidence
    assert describe_event(note) == (
        f"failed with 9 other tests in linux, run {dead.run_id} attempt 1 ({dead.sha[:7]}): "
        "infrastructure, not counted"
    )
    (incident,) = list_incidents(history.context(), ScoringSettings(), history.runs)
    assert (incident.run_pk, incident.failures, incident.results) == (dead.pk, 10, 40)
    assert incident.rule == "co-failure, shared fingerprint"


def test_a_service_down_for_a_few_tests_is_found_by_their_shared_error() -> None:
    # A job that usually fails 8 tests (a large suite) loses Redis: 5 more fail,
    # all with one error. Fewer than the usual count; the fingerprint tells.
    def job(own: str) -> History:
        history = History(suite=400)
        for _ in range(30):
            history.run("p", other_failures=8, fingerprints=(("a", 1), ("b", 1), ("c", 1)))
        hit = history.run(
            "e", other_failures=12, fingerprint=own, fingerprints=(("redis", 5), ("a", 1))
        )
        history.run("p", sha=hit.sha, run_id=hit.run_id, attempt=2, other_failures=8)
        history.runs_of("p" * 10, other_failures=8)
        return history

    outage = job("redis").verdict()
    assert outage.status == TestStatus.STABLE and outage.score == 0.0
    assert "with the same error" in describe_event(outage.evidence[0])
    # A test that failed for its own reasons in the same attempt still flipped.
    flaky = job("own").verdict()
    assert flaky.components["same_commit"]["events"] == 1


def test_a_regression_failing_several_tests_with_one_error_is_failing_not_an_incident() -> None:
    # The same error on consecutive commits is a breakage: only its first commit
    # looks like an incident, and the streak after it is the test's.
    history = History()
    history.runs_of("p" * 30)
    for _ in range(6):
        history.run("f", other_failures=4, fingerprint="keyerror", fingerprints=(("keyerror", 5),))
    verdict = history.verdict()
    assert verdict.status == TestStatus.FAILING
    assert verdict.components["failing"][0]["commits"] == 5
    assert len(list_incidents(history.context(), ScoringSettings(), history.runs)) == 1


def test_the_same_error_on_the_same_commit_again_is_no_incident() -> None:
    history = History()
    history.runs_of("p" * 30)
    first = history.run("f", other_failures=4, fingerprint="x", fingerprints=(("x", 5),))
    context = history.context()
    assert incident_at(context, ScoringSettings(), first.pk, "linux") is not None
    history.run(
        "f", sha=first.sha, run_id=first.run_id, attempt=2, other_failures=4,
        fingerprint="x", fingerprints=(("x", 5),),
    )  # fmt: skip
    assert incident_at(history.context(), ScoringSettings(), first.pk, "linux") is None


def test_without_its_fingerprint_a_failure_is_quiet_only_in_a_co_failure() -> None:
    history = History()
    history.runs_of("p" * 30)
    shared = history.run("f", other_failures=4, fingerprint="x", fingerprints=(("x", 5),))
    mass = history.run("f", other_failures=150)
    context, settings = history.context(), ScoringSettings()
    assert quiet_tally([ResultGroup("failed", "linux", shared.pk)], context, settings) is None
    with_it = quiet_tally(
        [ResultGroup("failed", "linux", shared.pk, fingerprint="x")], context, settings
    )
    assert with_it is not None and with_it.ignored_failures == 1
    quiet = quiet_tally([ResultGroup("failed", "linux", mass.pk)], context, settings)
    assert quiet is not None and quiet.ignored_failures == 1
    assert describe_event(quiet.discounted[0]).startswith("failed with 150 other tests in linux")


# --- broken is not flaky -------------------------------------------------------


def test_broken_on_most_attempts_is_failing_even_when_a_rerun_happens_to_pass() -> None:
    history = History()
    history.runs_of("p" * 30)
    for n in range(8):
        first = history.run("f")
        if n in (2, 5):  # two broken commits are re-run, and the re-runs happen to pass
            history.run("p", sha=first.sha, run_id=first.run_id, attempt=2)
    broken = history.verdict()
    assert broken.status == TestStatus.FAILING
    assert broken.components["failing"][0]["commits"] == 8
    assert broken.components["same_commit"]["events"] == 0
    history.runs_of("p" * 10)
    fixed = history.verdict()
    assert fixed.status == TestStatus.STABLE
    assert fixed.score == 0.0


def test_broken_on_a_pull_request_whose_rerun_passed_is_not_flaky() -> None:
    history = History()
    history.runs_of("p" * 30)
    history.run("f", branch="feature/cart", event="pull_request")
    history.run("p")
    second = history.run("f", branch="feature/cart", event="pull_request")
    history.run(
        "p", sha=second.sha, run_id=second.run_id, attempt=2, branch="feature/cart",
        event="pull_request",
    )  # fmt: skip
    history.run("p")
    history.run("p", branch="feature/cart", event="pull_request")  # the fix
    history.runs_of("p" * 20)
    verdict = history.verdict()
    assert verdict.status == TestStatus.STABLE
    assert verdict.score == 0.0


def test_in_run_reruns_passing_while_the_test_is_broken_are_not_flaky() -> None:
    # Surefire reruns a failure twice; on a broken test one rerun passes now and then.
    history = History()
    history.runs_of("p" * 30)
    for n in range(8):
        history.run("p", flaky_reruns=1) if n in (1, 4) else history.run("f")
    verdict = history.verdict()
    assert verdict.status == TestStatus.FAILING
    assert verdict.components["rerun"]["events"] == 0
    # A breakage whose first commit only failed before its rerun passed.
    history.runs_of("p" * 30)
    since = history.run("p", flaky_reruns=1)
    history.runs_of("fff")
    verdict = history.verdict()
    assert verdict.status == TestStatus.FAILING
    assert verdict.components["failing"][0]["since"] == since.started_iso


def test_a_frequent_flake_failing_on_some_attempts_of_consecutive_commits_is_still_flaky() -> None:
    history = History()
    history.runs_of("p" * 30)
    for mark in "fpfpfppf":  # a bad stretch: half the commits fail, re-runs pass
        first = history.run(mark)
        if mark == "f":
            history.run("p", sha=first.sha, run_id=first.run_id, attempt=2)
    history.runs_of("p" * 5)
    verdict = history.verdict()
    assert verdict.status == TestStatus.FLAKY
    assert verdict.components["same_commit"]["events"] == 4


# --- what must be caught -------------------------------------------------------


def test_failed_and_passed_on_the_same_commit_is_flaky_with_evidence() -> None:
    history = History()
    history.runs_of("p" * 20)
    failed = history.run("f")
    history.run("p", sha=failed.sha, run_id=failed.run_id, attempt=2)
    history.runs_of("p" * 5)
    verdict = history.verdict()
    assert verdict.status == TestStatus.FLAKY
    assert verdict.flaky_since == failed.started_iso
    event = verdict.evidence[0]
    assert event["kind"] == "same_commit"
    text = describe_event(event)
    assert failed.sha[:7] in text
    assert f"run {failed.run_id} attempt 1" in text and "attempt 2" in text


def test_push_and_pull_request_runs_of_one_commit_disagreeing_are_flaky() -> None:
    history = History()
    history.runs_of("p" * 20)
    sha = history.sha()
    history.run("f", sha=sha, branch="feature/x", event="push")
    history.run("p", sha=sha, branch="feature/x", event="pull_request")
    assert history.verdict().components["same_commit"]["events"] == 1
    assert history.verdict().status == TestStatus.FLAKY


def test_in_run_rerun_that_passed_is_flaky() -> None:
    surefire = History()
    surefire.runs_of("p" * 20)
    surefire.run("p", flaky_reruns=1)  # Surefire flakyFailure: failed, then passed
    assert surefire.verdict().status == TestStatus.FLAKY
    assert surefire.verdict().components["rerun"]["events"] == 1

    rerunfailures = History()
    rerunfailures.runs_of("p" * 20)
    rerunfailures.run({"linux": ["f", "p"]})  # reported twice in one job
    assert rerunfailures.verdict().status == TestStatus.FLAKY
    assert rerunfailures.verdict().components["same_commit"]["events"] == 0


def test_one_percent_flake_is_caught_once_there_are_enough_runs() -> None:
    history = random_flake(random.Random(3), runs=900, rate=0.01)
    verdict = history.verdict()
    assert verdict.failures >= 5
    assert verdict.status == TestStatus.FLAKY


def test_flake_in_one_matrix_job_only_is_caught() -> None:
    history = random_flake(
        random.Random(5), runs=400, rate=0.04, jobs=("linux", "windows"), flaky_jobs=("windows",)
    )
    verdict = history.verdict()
    assert verdict.status == TestStatus.FLAKY
    assert verdict.components["recency"]["jobs"] == ["windows"]


def test_bursty_flake_is_caught() -> None:
    rng = random.Random(11)
    history = History()
    history.runs_of("p" * 100)
    for _ in range(15):  # a bad week for the test: half its runs fail
        history.run("f" if rng.random() < 0.5 else "p")
    history.runs_of("p" * 60)
    assert history.verdict().status == TestStatus.FLAKY


def test_order_dependent_test_failing_reproducibly_on_some_commits_is_flaky() -> None:
    rng = random.Random(2)
    history = History()
    for _ in range(150):
        mark = "f" if rng.random() < 0.15 else "p"
        first = history.run(mark)
        if mark == "f" and rng.random() < 0.5:  # re-run: fails again, same commit
            history.run("f", sha=first.sha, run_id=first.run_id, attempt=2)
    verdict = history.verdict()
    assert verdict.components["same_commit"]["events"] == 0
    assert verdict.status == TestStatus.FLAKY


def test_flake_in_a_repository_that_never_reruns_is_caught_from_isolated_failures() -> None:
    history = random_flake(random.Random(8), runs=300, rate=0.05, rerun_rate=0.0)
    verdict = history.verdict()
    assert verdict.components["same_commit"]["events"] == 0
    assert verdict.components["isolated"]["events"] >= 2
    assert verdict.status == TestStatus.FLAKY


def test_new_test_mid_history_is_new_then_caught_when_it_flakes() -> None:
    history = History()
    history.runs_of("p" * 5)
    assert history.verdict().status == TestStatus.NEW
    rng = random.Random(4)
    random_flake(rng, runs=120, rate=0.1, history=history)
    assert history.verdict().status == TestStatus.FLAKY


def test_fixed_flake_recovers_after_enough_clean_runs() -> None:
    history = random_flake(random.Random(6), runs=200, rate=0.15, rerun_rate=0.3)
    assert history.verdict().status == TestStatus.FLAKY
    history.runs_of("p" * 60)
    assert history.verdict().status == TestStatus.FLAKY  # not forgiven after a short clean stretch
    history.runs_of("p" * 300)
    recovered = history.verdict()
    assert recovered.status == TestStatus.STABLE
    assert recovered.flaky_since is None
    assert recovered.components["recency"]["clean_since"] >= 300


@pytest.mark.parametrize(
    ("jobs", "rerun_rate", "at_least"),
    [
        # Two matrix jobs, failed runs re-run now and then: the usual set-up.
        (("linux", "macos"), 0.3, 0.95),
        # One job and never a re-run: only isolated failures tell, and a second
        # failure within 100 runs comes with probability 1 - 0.98^100 = 0.87.
        (("linux",), 0.0, 0.85),
    ],
)
def test_two_percent_flake_is_flagged_within_100_runs_of_its_first_failure(
    jobs: tuple[str, ...], rerun_rate: float, at_least: float
) -> None:
    flagged = trials = 0
    for seed in range(80):
        history = random_flake(
            random.Random(seed), runs=400, rate=0.02, jobs=jobs, rerun_rate=rerun_rate
        )
        first_failure = next(row.run_pk for row in sorted(history.rows) if row.outcome == "failed")
        if first_failure + 100 > max(history.runs):
            continue
        trials += 1
        flagged += any(
            history.verdict_after(upto).status == TestStatus.FLAKY
            for upto in range(first_failure, first_failure + 101, 5)
        )
    assert trials >= 60
    assert flagged / trials >= at_least, f"{flagged}/{trials}"


# --- scores, explanations, settings --------------------------------------------


def test_score_components_explain_the_score() -> None:
    history = random_flake(random.Random(9), runs=200, rate=0.08, rerun_rate=0.5)
    verdict = history.verdict()
    parts = verdict.components
    total = sum(parts[kind]["evidence"] for kind in ("same_commit", "rerun", "isolated"))
    assert total == pytest.approx(verdict.evidence_weight, abs=1e-3)
    decay = parts["recency"]["factor"]
    assert verdict.score == pytest.approx((1 - 2.718281828**-total) * decay, abs=1e-3)
    assert 0 < parts["failure_rate"] < 0.2
    assert all(describe_event(event) for event in verdict.evidence)


def test_weights_change_the_verdict() -> None:
    history = History()
    history.runs_of("p" * 20)
    failed = history.run("f")
    history.run("p", sha=failed.sha, run_id=failed.run_id, attempt=2)
    assert history.verdict().status == TestStatus.FLAKY
    cautious = ScoringSettings.from_json({"same_commit_weight": 0.3})
    assert history.verdict(cautious).status == TestStatus.STABLE


def test_clean_results_advance_a_verdict_like_a_full_rescore() -> None:
    history = random_flake(random.Random(12), runs=150, rate=0.1, rerun_rate=0.3)
    history.runs_of("p")  # so that no failure is waiting for its next run
    before = history.verdict()
    assert not before.pending
    history.runs_of("p" * 25)
    full = history.verdict()
    advanced = advance_clean(before, passes={"linux": 25}, settings=ScoringSettings())
    assert advanced.clean_since == full.clean_since
    assert advanced.results == full.results
    assert advanced.score == pytest.approx(full.score, abs=1e-6)
    assert advanced.status == full.status


def _replayed_like_analyze_run(history: History, settings: ScoringSettings) -> Verdict:
    """The verdict the services keep, run after run: advanced from quiet results, else rescored."""
    verdict: Verdict | None = None
    for pk in sorted(history.runs):
        run = history.runs[pk]
        context = HistoryContext(
            runs={p: m for p, m in history.runs.items() if p <= pk},
            loads={key: load for key, load in history.loads.items() if key[0] <= pk},
        )
        context.usual_failures = HistoryContext.usual_failures_from(context.loads.items())
        groups = [
            ResultGroup(row.outcome, row.job, pk, 1, row.flaky_reruns)
            for row in history.rows
            if row.run_pk == pk
        ]
        quiet = quiet_tally(groups, context, settings)
        failed_before = any(
            row.outcome in ("failed", "error") and history.runs[row.run_pk].sha == run.sha
            for row in history.rows
            if row.run_pk < pk
        )
        if (
            verdict is None
            or verdict.pending
            or run.branch in verdict.components.get("pending_branches", ())
            or quiet is None
            or failed_before
        ):
            rows = [row for row in history.rows if row.run_pk <= pk]
            verdict = score_test(rows, context, settings)
        else:
            verdict = advance_clean(
                verdict,
                passes=quiet.passes,
                skipped=quiet.skipped,
                ignored_failures=quiet.ignored_failures,
                latest_result_at=run.started_iso,
                settings=settings,
                discounted=quiet.discounted,
            )
    assert verdict is not None
    return verdict


@pytest.mark.parametrize("seed", range(6))
def test_quiet_results_with_incidents_advance_a_verdict_like_a_full_rescore(seed: int) -> None:
    # A flake, a mostly-broken stretch, and incidents of both kinds in between.
    rng = random.Random(seed)
    history = History()
    for n in range(220):
        if n % 37 == 5:
            hit = history.run("e", other_failures=150)  # a runner died
        elif n % 41 == 9:
            hit = history.run(
                "e", other_failures=4, fingerprint="redis", fingerprints=(("redis", 5),)
            )
        elif 100 <= n < 108:
            hit = history.run("f" if rng.random() < 0.9 else "p")
        else:
            hit = history.run("f" if rng.random() < 0.08 else "p")
        if rng.random() < 0.3:
            history.run(
                "f" if rng.random() < 0.08 else "p", sha=hit.sha, run_id=hit.run_id, attempt=2
            )
    settings = ScoringSettings()
    full = history.verdict(settings)
    replayed = _replayed_like_analyze_run(history, settings)
    assert (replayed.status, replayed.results, replayed.failures, replayed.clean_since) == (
        full.status, full.results, full.failures, full.clean_since,
    )  # fmt: skip
    assert replayed.score == pytest.approx(full.score, abs=1e-6)
    assert replayed.evidence == full.evidence
    assert replayed.components["outage_failures"] == full.components["outage_failures"]
    assert replayed.components["incidents"] == full.components["incidents"]


def test_a_test_only_incidents_failed_has_the_same_verdict_either_way() -> None:
    history = History()
    history.runs_of("p" * 20)
    history.run("e", other_failures=150)
    history.runs_of("p" * 5)
    history.run("e", other_failures=150)
    history.runs_of("p" * 5)
    context, settings = history.context(), ScoringSettings()
    groups = [ResultGroup(r.outcome, r.job, r.run_pk) for r in history.rows]
    quiet = quiet_tally(groups, context, settings)
    assert quiet is not None
    summary = quiet_verdict(
        results=quiet.results,
        failures=quiet.ignored_failures,
        skipped=quiet.skipped,
        latest_result_at=history.runs[max(history.runs)].started_iso,
        settings=settings,
        discounted=quiet.discounted,
    )
    full = history.verdict(settings)
    assert (summary.status, summary.score, summary.results, summary.failures) == (
        full.status, full.score, full.results, full.failures,
    )  # fmt: skip
    assert summary.evidence == full.evidence and len(full.evidence) == 2


def test_a_failure_without_a_next_run_is_pending() -> None:
    history = History()
    history.runs_of("p" * 20 + "f")
    assert history.verdict().pending


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"isolated_wieght": 0.4}, "unknown scoring setting 'isolated_wieght'"),
        ({"flaky_threshold": 1.5}, "flaky_threshold must be between 0 and 1"),
        ({"min_results": 2.5}, "must be a whole number"),
        ({"same_commit_weight": "high"}, "must be a number"),
        ({"min_half_life": 900}, "min_half_life must be at least 1 and at most max_half_life"),
        ({"incident_min_tests": 1}, "incident_min_tests must be at least 2"),
        ({"breakage_share": 0}, "breakage_share must be above 0"),
    ],
)
def test_bad_scoring_settings_are_refused_by_name(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScoringSettings.from_json(overrides)


def test_results_of_unknown_runs_are_ignored() -> None:
    history = History()
    history.runs_of("ppp")
    rows = [*history.rows, history.rows[0]._replace(run_pk=999)]
    assert score_test(rows, history.context(), ScoringSettings()).results == 3
