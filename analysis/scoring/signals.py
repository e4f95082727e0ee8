"""Finding the evidence in one test's history: the events that point at a flake, and the streaks that point at a breakage.

Results are counted per job (matrix configuration) and at commit level: all
results of one job on one sha (re-run attempts, push and pull_request runs of
the same commit) form one observation that passed, failed, or did both. Three
kinds of event come out of them: ``same_commit`` (an observation that both
passed and failed across run attempts: same code, same configuration,
different outcome), ``rerun`` (a failure that passed on an in-run rerun) and
``isolated`` (a failed observation with passes right before and after it).
Every failure is discounted by how many other tests failed in the same job at
once beyond the usual, since an infra outage is not the test's fault, and
ignored altogether below a cutoff. What the events weigh together is
``analysis.scoring.maths``'s business; this module only finds and weighs them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from analysis.scoring.history import HistoryContext, ResultRow, RunMeta
from analysis.scoring.settings import ScoringSettings
from ingest.junit import FAILED_OUTCOMES, Outcome


def failure_discount(
    context: HistoryContext,
    settings: ScoringSettings,
    run_pk: int,
    job: str,
    *,
    own_failure: bool = True,
) -> float:
    """How much a failure in this job of this run counts (1.0: fully; near 0: an outage)."""
    load = context.loads.get((run_pk, job))
    if load is None:
        return 1.0
    excess = load.failures - (1 if own_failure else 0) - context.usual_failures.get(job, 0.0)
    if excess <= 0:
        return 1.0
    return 1.0 / (1.0 + excess / settings.mass_failure_scale)


def is_outage_casualty(
    context: HistoryContext, settings: ScoringSettings, run_pk: int, job: str
) -> bool:
    """A failure that coincided with so many others that it is ignored."""
    return failure_discount(context, settings, run_pk, job) < settings.mass_failure_cutoff


@dataclass(slots=True)
class Event:
    """One piece of flaky evidence, already weighed (outage discount included)."""

    kind: str  # same_commit | rerun | isolated
    weight: float
    index: int  # position in the test's chronological results
    job: str
    detail: dict[str, Any]  # what is stored and explained (explain.describe_event)


@dataclass(slots=True)
class Shape:
    """What the walk along each job's commits found besides events."""

    pending: bool = False
    # Branches whose last commit (in some job) failed: the branch's next commit
    # decides whether that failure was isolated.
    pending_branches: set[str] = field(default_factory=set)
    streak_jobs: list[dict[str, Any]] = field(default_factory=list)
    transitions: int = 0
    streaks: int = 0
    longest: int = 0


@dataclass(slots=True)
class Evidence:
    """Everything the walk found in one test's history that its verdict is made of."""

    events: list[Event]  # in time order
    shape: Shape
    results: int
    failures: int
    skipped: int
    ignored: int  # failures ignored as outage casualties
    # Indexes (in time order) of the results that count, and of the passing
    # ones, per job: recency is measured in the jobs where the test flaked.
    judged_at: dict[str, list[int]]
    passed_at: dict[str, list[int]]
    failed_branches: list[str]  # in the order of their first failure
    fingerprints: int
    last_failure: RunMeta | None
    latest: RunMeta | None


def collect_evidence(
    rows: Iterable[ResultRow], context: HistoryContext, settings: ScoringSettings
) -> Evidence:
    """The evidence in one test's results (any order); results of runs not in the context are left out."""
    runs = context.runs
    ordered = sorted(
        (row for row in rows if row.run_pk in runs),
        key=lambda row: (runs[row.run_pk].order, row.position),
    )
    walk = _Walk(context, settings)
    for index, row in enumerate(ordered):
        walk.add(index, row, runs[row.run_pk])
    return walk.evidence()


@dataclass(slots=True)
class _Observation:
    """All results of one job on one commit."""

    job: str
    sha: str
    first: tuple[float, int, int]
    index: int = -1  # of its last failing result
    passes: int = 0
    fails: int = 0
    fail_weight: float = 0.0
    branches: set[str] = field(default_factory=set)
    failed_runs: list[RunMeta] = field(default_factory=list)
    passed_runs: list[RunMeta] = field(default_factory=list)

    @property
    def state(self) -> str:
        """M: failed and passed, F: failed, P: passed, U: only skipped."""
        if self.fails:
            return "M" if self.passes else "F"
        return "P" if self.passes else "U"


@dataclass(slots=True)
class _InRun:
    """The test's results in one job of one run attempt (a test reported twice is a rerun)."""

    index: int  # of the last failure, else of the first result
    weight: float = 0.0  # the strongest failure's discounted weight
    fails: int = 0
    passes: int = 0


class _Walk:
    """Collects one test's evidence while its results go by in time order."""

    def __init__(self, context: HistoryContext, settings: ScoringSettings) -> None:
        self.context, self.settings = context, settings
        self.discounts: dict[tuple[int, str, bool], float] = {}
        self.results = self.failures = self.skipped = self.ignored = 0
        self.passed_at: dict[str, list[int]] = {}
        self.judged_at: dict[str, list[int]] = {}
        self.observations: dict[tuple[str, str], _Observation] = {}
        self.in_run: dict[tuple[int, str], _InRun] = {}
        self.events: list[Event] = []
        self.fingerprints: set[str] = set()
        self.failed_branches: dict[str, None] = {}  # an ordered set
        self.last_failure: RunMeta | None = None
        self.latest: RunMeta | None = None

    def discount(self, run_pk: int, job: str, own_failure: bool) -> float:
        key = (run_pk, job, own_failure)
        value = self.discounts.get(key)
        if value is None:
            value = self.discounts[key] = failure_discount(
                self.context, self.settings, run_pk, job, own_failure=own_failure
            )
        return value

    def add(self, index: int, row: ResultRow, run: RunMeta) -> None:
        self.results += 1
        self.latest = run
        outcome = row.outcome
        if outcome == Outcome.SKIPPED:
            self.skipped += 1
            return
        key = (row.job, run.sha)
        obs = self.observations.get(key)
        if obs is None:
            obs = self.observations[key] = _Observation(row.job, run.sha, run.order)
        obs.branches.add(run.branch)
        failed = outcome in FAILED_OUTCOMES
        if row.flaky_reruns and not failed:
            # Surefire's flakyFailure/flakyError: failed, then passed on an
            # in-run rerun, all within this one result.
            weight = self.settings.rerun_weight * self.discount(row.run_pk, row.job, False)
            if weight >= self.settings.rerun_weight * self.settings.mass_failure_cutoff:
                self.last_failure = run  # it did fail, before its rerun passed
                self.events.append(
                    Event(
                        "rerun",
                        weight,
                        index,
                        row.job,
                        _run_detail("rerun", run, row.job, reruns=row.flaky_reruns),
                    )
                )
        in_run = self.in_run.get((row.run_pk, row.job))
        if failed:
            self.failures += 1
            weight = self.discount(row.run_pk, row.job, True)
            if weight < self.settings.mass_failure_cutoff:
                self.ignored += 1
                return
            self.judged_at.setdefault(row.job, []).append(index)
            if row.fingerprint:
                self.fingerprints.add(row.fingerprint)
            self.failed_branches[run.branch] = None
            self.last_failure = run
            obs.fails += 1
            obs.index = index
            obs.fail_weight = max(obs.fail_weight, weight)
            if run not in obs.failed_runs:
                obs.failed_runs.append(run)
            if in_run is None:
                in_run = self.in_run[(row.run_pk, row.job)] = _InRun(index, weight)
            in_run.fails += 1
            in_run.index, in_run.weight = index, max(in_run.weight, weight)
        else:
            self.judged_at.setdefault(row.job, []).append(index)
            self.passed_at.setdefault(row.job, []).append(index)
            obs.passes += 1
            if run not in obs.passed_runs:
                obs.passed_runs.append(run)
            if in_run is None:
                in_run = self.in_run[(row.run_pk, row.job)] = _InRun(index)
            in_run.passes += 1

    def evidence(self) -> Evidence:
        """The events and the shape, once every result went by."""
        self._in_run_rerun_events()
        self._same_commit_events()
        by_job: dict[str, list[_Observation]] = {}
        for obs in self.observations.values():
            if obs.state != "U":
                by_job.setdefault(obs.job, []).append(obs)
        shape = Shape()
        for job, sequence in by_job.items():
            sequence.sort(key=lambda o: o.first)
            self._isolated_events(job, sequence, shape)
            streak = self._trailing_streak(job, sequence)
            if streak is None:
                on_default = [o for o in sequence if self.context.default_branch in o.branches]
                streak = self._trailing_streak(job, on_default)
            if streak is not None:
                shape.streak_jobs.append(streak)
        return Evidence(
            # A stable sort: events at one index keep the order they were found in.
            events=sorted(self.events, key=lambda e: e.index),
            shape=shape,
            results=self.results,
            failures=self.failures,
            skipped=self.skipped,
            ignored=self.ignored,
            judged_at=self.judged_at,
            passed_at=self.passed_at,
            failed_branches=list(self.failed_branches),
            fingerprints=len(self.fingerprints),
            last_failure=self.last_failure,
            latest=self.latest,
        )

    def _in_run_rerun_events(self) -> None:
        """A test reported twice in one job of one run (pytest-rerunfailures, gotestsum), failed and then passed."""
        for (run_pk, job), in_run in self.in_run.items():
            if in_run.fails and in_run.passes:
                self.events.append(
                    Event(
                        "rerun",
                        self.settings.rerun_weight * in_run.weight,
                        in_run.index,
                        job,
                        _run_detail("rerun", self.context.runs[run_pk], job, reruns=in_run.fails),
                    )
                )

    def _same_commit_events(self) -> None:
        """Failed and passed on one commit in one job, in different run attempts."""
        for obs in self.observations.values():
            if obs.state != "M" or len({r.pk for r in (*obs.failed_runs, *obs.passed_runs)}) < 2:
                continue
            self.events.append(
                Event(
                    "same_commit",
                    self.settings.same_commit_weight * obs.fail_weight,
                    obs.index,
                    obs.job,
                    {
                        "kind": "same_commit",
                        "sha": obs.sha,
                        "job": obs.job,
                        "at": obs.failed_runs[0].started_iso,
                        "failed": [_run_ref(r) for r in obs.failed_runs[:3]],
                        "passed": [_run_ref(r) for r in obs.passed_runs[:3]],
                    },
                )
            )

    def _isolated_events(self, job: str, sequence: list[_Observation], shape: Shape) -> None:
        """Failed commits with passes on both sides, in time order and along their branch.

        Time order follows main (pull_request runs test the merge with it); the
        branch order follows a pull request's own commits. A regression fails
        on consecutive commits in at least one of the two orders, so it is never
        isolated: broken on main from one commit to its fix, broken on a pull
        request's commits only, broken in one job only.
        """
        branch_sequences: dict[str, list[_Observation]] = {}
        for obs in sequence:
            for branch in obs.branches:
                branch_sequences.setdefault(branch, []).append(obs)
        branch_position = {
            (id(obs), branch): i
            for branch, seq in branch_sequences.items()
            for i, obs in enumerate(seq)
        }
        previous_failed, run_length = False, 0
        for i, obs in enumerate(sequence):
            failed_here = obs.state == "F"
            shape.transitions += bool(i) and previous_failed != failed_here
            previous_failed = failed_here
            if not failed_here:
                run_length = 0
                continue
            run_length += 1
            shape.streaks += run_length == 1
            shape.longest = max(shape.longest, run_length)
            around = _neighbours(sequence, i)
            if around is None:
                shape.pending = True  # the next commit decides
                continue
            branch_factor = 0.0
            for branch in obs.branches:
                seq, at = branch_sequences[branch], branch_position[(id(obs), branch)]
                factor = _neighbours(seq, at)
                if factor is None:
                    shape.pending_branches.add(branch)
                    factor = 0.5 if _ends_in_pass(seq, at) else 0.0
                branch_factor = max(branch_factor, factor)
            weight = self.settings.isolated_weight * around * branch_factor * obs.fail_weight
            if weight > 0:
                detail = _run_detail("isolated", obs.failed_runs[-1], job)
                self.events.append(Event("isolated", weight, obs.index, job, detail))

    def _trailing_streak(self, job: str, sequence: list[_Observation]) -> dict[str, Any] | None:
        """The job's last commits all failed, more of them than the flake rate explains."""
        tail = 0
        for obs in reversed(sequence):
            if obs.state != "F":
                break
            tail += 1
        if tail == 0:
            return None
        earlier = sequence[: len(sequence) - tail]
        needed = self.settings.failing_streak
        failed_share = sum(1 for o in earlier if o.state in "FM") / len(earlier) if earlier else 0.0
        if 0 < failed_share < 1:
            # So many failures in a row that a flake this frequent would make
            # them by chance less than 1% of the time.
            needed = max(needed, math.ceil(math.log(0.01) / math.log(failed_share)))
        if tail < needed:
            return None
        first = sequence[len(sequence) - tail]
        return {
            "job": job,
            "commits": tail,
            "since_sha": first.sha,
            "since": first.failed_runs[0].started_iso,
        }


def _neighbours(sequence: list[_Observation], i: int) -> float | None:
    """1.0 when the observations on both sides passed, 0.5 when the earlier side is
    missing, 0.0 when either failed; None when there is nothing after it yet."""
    if i + 1 >= len(sequence):
        return None
    if sequence[i + 1].state == "F":
        return 0.0
    if i == 0:
        return 0.5
    return 0.0 if sequence[i - 1].state == "F" else 1.0


def _ends_in_pass(sequence: list[_Observation], i: int) -> bool:
    """Last on its branch: isolated on the earlier side (or nothing before)."""
    return i == 0 or sequence[i - 1].state != "F"


def _run_ref(run: RunMeta) -> dict[str, Any]:
    return {"run_id": run.run_id, "attempt": run.attempt}


def _run_detail(kind: str, run: RunMeta, job: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "sha": run.sha,
        "job": job,
        "branch": run.branch,
        "run_id": run.run_id,
        "attempt": run.attempt,
        "at": run.started_iso,
        **extra,
    }
