"""Finding the evidence in one test's history: the events that point at a flake, and the streaks that point at a breakage.

Results are counted per job (matrix configuration) and at commit level: all
results of one job on one sha (re-run attempts, push and pull_request runs of
the same commit) form one observation that passed, failed, or did both. Three
kinds of event come out of them: ``same_commit`` (an observation that both
passed and failed across run attempts: same code, same configuration,
different outcome), ``rerun`` (a failure that passed on an in-run rerun) and
``isolated`` (a failed observation with passes right before and after it).

A failure that an infrastructure incident explains (``incidents``: many tests
of the job attempt failing at once, or with one error) is left out: no
evidence, no pass, only a note in the evidence saying why. Any other failure is
discounted by how many other tests failed in the same job at once beyond the
usual. Broken is not flaky: consecutive commits that each failed, mostly,
in the job's time order or along a branch, are a breakage, and a re-run that
happened to pass on one of them counts as failed, so a test broken on most
attempts makes a failing streak, not a same-commit flip. What the
events weigh together is ``analysis.scoring.maths``'s business; this module
only finds and weighs them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from analysis.scoring.history import HistoryContext, ResultRow, RunMeta
from analysis.scoring.incidents import incident_at, incident_note, note_order
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
    context: HistoryContext,
    settings: ScoringSettings,
    run_pk: int,
    job: str,
    fingerprint: str | None = None,
) -> bool:
    """A failure that an infrastructure incident explains, so it is ignored.

    Without its fingerprint, only an incident that explains every failure of
    the job attempt (co-failure) says yes.
    """
    incident = incident_at(context, settings, run_pk, job)
    return incident is not None and bool(incident.explains(fingerprint))


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
    ignored: int  # failures ignored as outage casualties (explained by an incident)
    #: one note per job attempt whose incident explained a failure, in time order
    discounted: list[dict[str, Any]]
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
    rerun_passes: int = 0  # passes that failed first, on an in-run rerun (Surefire)
    explained: int = 0  # failures an incident explains (not counted in fails)
    absorbed: bool = False  # failed and passed, in a breakage: counts as failed
    in_breakage: bool = False  # one of consecutive commits failing on most attempts
    fail_weight: float = 0.0
    branches: set[str] = field(default_factory=set)
    failed_runs: list[RunMeta] = field(default_factory=list)
    passed_runs: list[RunMeta] = field(default_factory=list)

    @property
    def state(self) -> str:
        """M: failed and passed (an in-run rerun included), F: failed (or M absorbed by
        a breakage), P: passed, X: failed only in infrastructure incidents, U: only skipped."""
        if self.fails or self.rerun_passes:
            return "M" if self.passes and not self.absorbed else "F"
        if self.passes:
            return "P"
        return "X" if self.explained else "U"


@dataclass(slots=True)
class _InRun:
    """The test's results in one job of one run attempt (a test reported twice is a rerun)."""

    index: int  # of the last failure, else of the first result
    obs: _Observation  # the commit's observation it belongs to
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
        # In-run reruns that passed (Surefire), kept apart until the walk knows
        # whether their commit belongs to a breakage.
        self.rerun_events: list[tuple[_Observation, Event]] = []
        self.notes: dict[tuple[int, str], dict[str, Any]] = {}
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
            incident = incident_at(self.context, self.settings, row.run_pk, row.job)
            weight = self.settings.rerun_weight * self.discount(row.run_pk, row.job, False)
            if (incident is None or not incident.co_failure) and (
                weight >= self.settings.rerun_weight * self.settings.mass_failure_cutoff
            ):
                self.last_failure = run  # it did fail, before its rerun passed
                obs.rerun_passes += 1
                detail = _run_detail("rerun", run, row.job, reruns=row.flaky_reruns)
                self.rerun_events.append((obs, Event("rerun", weight, index, row.job, detail)))
        in_run = self.in_run.get((row.run_pk, row.job))
        if failed:
            self.failures += 1
            incident = incident_at(self.context, self.settings, row.run_pk, row.job)
            if incident is not None and incident.explains(row.fingerprint):
                self.ignored += 1
                obs.explained += 1
                if (row.run_pk, row.job) not in self.notes:
                    self.notes[(row.run_pk, row.job)] = incident_note(
                        incident, run, row.fingerprint
                    )
                return
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
                in_run = self.in_run[(row.run_pk, row.job)] = _InRun(index, obs, weight)
            in_run.fails += 1
            in_run.index, in_run.weight = index, max(in_run.weight, weight)
        else:
            self.judged_at.setdefault(row.job, []).append(index)
            self.passed_at.setdefault(row.job, []).append(index)
            obs.passes += 1
            if run not in obs.passed_runs:
                obs.passed_runs.append(run)
            if in_run is None:
                in_run = self.in_run[(row.run_pk, row.job)] = _InRun(index, obs)
            in_run.passes += 1

    def evidence(self) -> Evidence:
        """The events and the shape, once every result went by."""
        by_job: dict[str, list[_Observation]] = {}
        for obs in self.observations.values():
            if obs.state != "U":
                by_job.setdefault(obs.job, []).append(obs)
        branch_sequences: dict[str, dict[str, list[_Observation]]] = {}
        for job, sequence in by_job.items():
            sequence.sort(key=lambda o: o.first)
            branches = branch_sequences[job] = _branch_sequences(sequence)
            default = self.context.default_branch
            share = self.settings.breakage_share
            _find_breakages(sequence, commits=3, share=share)
            for branch, along in branches.items():
                _find_breakages(along, commits=3 if branch == default else 2, share=share)
        # A commit absorbed by a breakage flipped by chance: its reruns are no evidence.
        self.events.extend(event for obs, event in self.rerun_events if not obs.absorbed)
        self._in_run_rerun_events()
        self._same_commit_events()
        shape = Shape()
        for job, sequence in by_job.items():
            self._isolated_events(job, sequence, branch_sequences[job], shape)
            # A commit whose failures were all put down to an incident says
            # nothing about a streak either way.
            counted = [o for o in sequence if o.state != "X"]
            streak = self._trailing_streak(job, counted)
            if streak is None:
                on_default = [o for o in counted if self.context.default_branch in o.branches]
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
            discounted=sorted(self.notes.values(), key=note_order),
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
            if in_run.fails and in_run.passes and not in_run.obs.absorbed:
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
            if obs.state != "M" or not obs.fails:
                continue
            if len({r.pk for r in (*obs.failed_runs, *obs.passed_runs)}) < 2:
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

    def _isolated_events(
        self,
        job: str,
        sequence: list[_Observation],
        branch_sequences: dict[str, list[_Observation]],
        shape: Shape,
    ) -> None:
        """Failed commits with passes on both sides, in time order and along their branch.

        Time order follows main (pull_request runs test the merge with it); the
        branch order follows a pull request's own commits. A regression fails
        on consecutive commits in at least one of the two orders, so it is never
        isolated: broken on main from one commit to its fix, broken on a pull
        request's commits only, broken in one job only. A neighbour that failed
        only in an incident (X) is no pass: nothing says the test passed there.
        """
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
            if obs.in_breakage:
                continue  # broken on most attempts of its commits: not a flake's failure
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
        # A commit absorbed into a breakage may have failed only before an in-run rerun passed.
        since = (first.failed_runs or first.passed_runs)[0]
        return {
            "job": job,
            "commits": tail,
            "since_sha": first.sha,
            "since": since.started_iso,
        }


def _branch_sequences(sequence: list[_Observation]) -> dict[str, list[_Observation]]:
    """The job's observations along each branch, in time order."""
    branches: dict[str, list[_Observation]] = {}
    for obs in sequence:
        for branch in obs.branches:
            branches.setdefault(branch, []).append(obs)
    return branches


def _find_breakages(sequence: list[_Observation], *, commits: int, share: float) -> None:
    """Broken on most attempts: marks the commits of the breakages in this sequence.

    A breakage is a stretch of commits that each failed at least once (one clean
    commit between two failed ones does not end it), with at least ``commits``
    failed commits, in which at least ``share`` of the attempts failed. Its
    commits are no isolated failures, and one that also passed (a re-run or an
    in-run rerun that happened to pass) counts as failed: no flip. A flake fails
    on some attempts, not on most, and rarely on several commits in a row.

    A commit whose failures an incident explains (X) neither ends the stretch
    nor counts in it, since an incident adds nothing (``quiet_tally``).
    """
    members = [obs for obs in sequence if obs.state != "X"]
    i = 0
    while i < len(members):
        if not _failed_once(members[i]):
            i += 1
            continue
        stretch, j = [members[i]], i + 1
        while j < len(members):
            if _failed_once(members[j]):
                stretch.append(members[j])
            elif (
                j + 1 < len(members)
                and _failed_once(members[j - 1])
                and _failed_once(members[j + 1])
            ):
                stretch.append(members[j])  # one clean commit in a row of failures
            else:
                break
            j += 1
        failed_commits = [obs for obs in stretch if _failed_once(obs)]
        failed = sum(obs.fails + obs.rerun_passes for obs in stretch)
        clean = sum(obs.passes - obs.rerun_passes for obs in stretch)
        if len(failed_commits) >= commits and failed >= share * (failed + clean):
            for obs in failed_commits:
                obs.absorbed = obs.in_breakage = True
        i = j


def _failed_once(obs: _Observation) -> bool:
    return bool(obs.fails or obs.rerun_passes)


def _blocks(obs: _Observation) -> bool:
    """A neighbour that makes a failure not isolated: failed, or failed in an incident."""
    return obs.state in ("F", "X")


def _neighbours(sequence: list[_Observation], i: int) -> float | None:
    """1.0 when the observations on both sides passed, 0.5 when the earlier side is
    missing, 0.0 when either failed; None when there is nothing after it yet."""
    if i + 1 >= len(sequence):
        return None
    if _blocks(sequence[i + 1]):
        return 0.0
    if i == 0:
        return 0.5
    return 0.0 if _blocks(sequence[i - 1]) else 1.0


def _ends_in_pass(sequence: list[_Observation], i: int) -> bool:
    """Last on its branch: isolated on the earlier side (or nothing before)."""
    return i == 0 or not _blocks(sequence[i - 1])


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
