"""One test's verdict from its history: the evidence, the score, the classification.

The evidence is counted per job (matrix configuration), at commit level: all
results of one job on one sha (re-run attempts, push and pull_request runs of
the same commit) form one observation that passed, failed, or did both.

- ``same_commit``: an observation that both passed and failed across run
  attempts. Same code, same configuration, different outcome.
- ``rerun``: a failure that passed on an in-run rerun (Surefire
  flakyFailure/flakyError, or the test reported twice in one job, as
  pytest-rerunfailures and gotestsum do).
- ``isolated``: a failed observation with passes right before and after it,
  both in time order (which follows main, since pull_request runs test the
  merge with it) and along its own branch (which follows a pull request's own
  commits). A regression fails on consecutive commits in at least one of the
  two orders, so it is never isolated: broken on main from one commit to its
  fix, broken on a pull request's commits only, broken in one job only.

Each failure's weight is discounted by how many other tests failed in the same
job at once beyond the usual (an infra outage is not the test's fault); below a
cutoff the failure is ignored altogether.

score = (1 - exp(-sum of event weights)) * 0.5 ** (clean results since the
last event / half-life). A test is ``failing`` when the last commits of a job
all failed (a regression, not a flake), ``flaky`` when its score reaches the
threshold, ``new`` when it has too few results to say, else ``stable``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from analysis.scoring.history import FAILED_OUTCOMES, HistoryContext, ResultRow, RunMeta
from analysis.scoring.settings import ScoringSettings

FLAKY, FAILING, STABLE, NEW = "flaky", "failing", "stable", "new"
_EVIDENCE_KEPT = 5  # most recent events kept for the explanation
_BRANCHES_KEPT = 5


@dataclass(slots=True)
class Verdict:
    """Everything stored for one test after scoring."""

    status: str
    score: float
    results: int = 0
    failures: int = 0
    #: sum of the event weights (before recency); with ``half_life`` and
    #: ``clean_since`` it lets later clean results update the score without
    #: reading the history again
    evidence_weight: float = 0.0
    half_life: float = 0.0
    clean_since: int = 0
    #: a failure whose verdict still depends on results to come (it may turn
    #: out isolated or the start of a streak): the next result needs a full look;
    #: so does the next commit of a branch in ``components["pending_branches"]``
    pending: bool = False
    flaky_since: str | None = None
    last_failure_at: str | None = None
    latest_result_at: str | None = None
    components: dict[str, Any] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_flaky(self) -> bool:
        return self.status == FLAKY


@dataclass(slots=True)
class _Event:
    kind: str
    weight: float
    index: int  # position in the test's chronological results
    job: str
    detail: dict[str, Any]


@dataclass(slots=True)
class _Shape:
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
        if self.fails:
            return "M" if self.passes else "F"
        return "P" if self.passes else "U"


def score_test(
    rows: Iterable[ResultRow], context: HistoryContext, settings: ScoringSettings
) -> Verdict:
    """Score one test from all its results (any order) and the history around them."""
    runs = context.runs
    ordered = sorted(
        (row for row in rows if row.run_pk in runs),
        key=lambda row: (runs[row.run_pk].order, row.position),
    )
    walk = _Walk(context, settings)
    for index, row in enumerate(ordered):
        walk.add(index, row, runs[row.run_pk])
    return walk.verdict()


def advance_clean(
    verdict: Verdict,
    *,
    passes: dict[str, int],
    skipped: int = 0,
    ignored_failures: int = 0,
    latest_result_at: str | None = None,
    settings: ScoringSettings,
) -> Verdict:
    """The verdict after more results that add no evidence, without the history.

    ``passes`` counts the new passing results per job. Only valid when
    ``verdict.pending`` is false and the new results are passes, skips or
    failures ignored as outage casualties, none on a commit the test failed on.
    """
    assert not verdict.pending
    recency = verdict.components.get("recency") or {}
    flaky_jobs = recency.get("jobs") or []
    counted = sum(count for job, count in passes.items() if job in flaky_jobs)
    clean_since = verdict.clean_since + counted
    judged = int(recency.get("judged", 0)) + counted
    half_life = verdict.half_life
    if verdict.evidence_weight > 0:
        half_life = _half_life(settings, judged, int(recency.get("event_points", 1)))
    score = _decayed(verdict.evidence_weight, clean_since, half_life)
    results = verdict.results + sum(passes.values()) + skipped + ignored_failures
    status = verdict.status
    if status in (FLAKY, NEW, STABLE):
        status = _status_without_streak(score, results, settings)
    components = dict(verdict.components)
    components["recency"] = _recency(
        clean_since, half_life, verdict.evidence_weight, flaky_jobs, judged,
        int(recency.get("event_points", 0)),
    )  # fmt: skip
    if ignored_failures:
        components["outage_failures"] = components.get("outage_failures", 0) + ignored_failures
    if skipped:
        components["skipped"] = _skipped(verdict) + skipped
    return Verdict(
        status=status,
        score=round(score, 6),
        results=results,
        failures=verdict.failures + ignored_failures,
        evidence_weight=verdict.evidence_weight,
        half_life=half_life,
        clean_since=clean_since,
        pending=False,
        flaky_since=verdict.flaky_since if status == FLAKY else None,
        last_failure_at=verdict.last_failure_at,
        latest_result_at=latest_result_at or verdict.latest_result_at,
        components=components,
        evidence=verdict.evidence,
    )


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


def quiet_verdict(
    *,
    results: int,
    failures: int,
    skipped: int,
    latest_result_at: str | None,
    settings: ScoringSettings,
) -> Verdict:
    """The verdict of a test with no evidence: never failed, or only as an outage casualty."""
    components: dict[str, Any] = {"outage_failures": failures, "skipped": skipped}
    return Verdict(
        status=NEW if results < settings.min_results else STABLE,
        score=0.0,
        results=results,
        failures=failures,
        half_life=float(settings.min_half_life),
        latest_result_at=latest_result_at,
        components=components,
    )


def describe_event(event: dict[str, Any]) -> str:
    """One line a person can check against GitHub."""
    sha, job = event.get("sha", "")[:7], event.get("job", "")
    where = f"{sha} in {job}" if job else sha
    kind = event.get("kind")
    if kind == "same_commit":
        failed = ", ".join(_run_label(r) for r in event.get("failed", []))
        passed = ", ".join(_run_label(r) for r in event.get("passed", []))
        return f"failed and passed on {where}: failed in {failed}; passed in {passed}"
    if kind == "rerun":
        return f"failed, then passed on an in-run rerun in {_run_label(event)} ({where})"
    if kind == "isolated":
        return f"failed on {where} ({_run_label(event)}, branch {event.get('branch', '?')}) between passing commits"
    return str(event)


def _run_label(run: dict[str, Any]) -> str:
    return f"run {run.get('run_id')} attempt {run.get('attempt')}"


class _Walk:
    """Collects one test's evidence while its results go by in time order."""

    def __init__(self, context: HistoryContext, settings: ScoringSettings) -> None:
        self.context, self.settings = context, settings
        self.discounts: dict[tuple[int, str, bool], float] = {}
        self.results = self.failures = self.skipped = self.ignored = 0
        # Indexes (in time order) of passing results, and of all results that
        # count, per job: recency is measured in the jobs where the test flaked.
        self.passed_at: dict[str, list[int]] = {}
        self.judged_at: dict[str, list[int]] = {}
        self.observations: dict[tuple[str, str], _Observation] = {}
        # (run, job) -> [fails, passes, index of the last failure, its weight]
        self.in_run: dict[tuple[int, str], list] = {}
        self.events: list[_Event] = []
        self.fingerprints: set[str] = set()
        self.failed_branches: dict[str, None] = {}
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
        if outcome == "skipped":
            self.skipped += 1
            return
        key = (row.job, run.sha)
        obs = self.observations.get(key)
        if obs is None:
            obs = self.observations[key] = _Observation(row.job, run.sha, run.order)
        obs.branches.add(run.branch)
        failed = outcome in FAILED_OUTCOMES
        if row.flaky_reruns and not failed:
            weight = self.settings.rerun_weight * self.discount(row.run_pk, row.job, False)
            if weight >= self.settings.rerun_weight * self.settings.mass_failure_cutoff:
                self.last_failure = run  # it did fail, before its rerun passed
                self.events.append(
                    _Event(
                        "rerun",
                        weight,
                        index,
                        row.job,
                        _run_detail("rerun", run, row.job, reruns=row.flaky_reruns),
                    )
                )
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
            counts = self.in_run.setdefault((row.run_pk, row.job), [0, 0, index, weight])
            counts[0] += 1
            counts[2], counts[3] = index, max(counts[3], weight)
        else:
            self.judged_at.setdefault(row.job, []).append(index)
            self.passed_at.setdefault(row.job, []).append(index)
            obs.passes += 1
            if run not in obs.passed_runs:
                obs.passed_runs.append(run)
            counts = self.in_run.setdefault((row.run_pk, row.job), [0, 0, index, 0.0])
            counts[1] += 1

    def verdict(self) -> Verdict:
        self._in_run_rerun_events()
        self._same_commit_events()
        by_job: dict[str, list[_Observation]] = {}
        for obs in self.observations.values():
            if obs.state != "U":
                by_job.setdefault(obs.job, []).append(obs)
        shape = _Shape()
        for job, sequence in by_job.items():
            sequence.sort(key=lambda o: o.first)
            self._isolated_events(job, sequence, shape)
            streak = self._trailing_streak(job, sequence)
            if streak is None:
                on_default = [o for o in sequence if self.context.default_branch in o.branches]
                streak = self._trailing_streak(job, on_default)
            if streak is not None:
                shape.streak_jobs.append(streak)
        return self._combine(shape)

    def _in_run_rerun_events(self) -> None:
        """A test reported twice in one job of one run, failed and then passed."""
        for (run_pk, job), (fails, passes, index, weight) in self.in_run.items():
            if fails and passes:
                self.events.append(
                    _Event(
                        "rerun",
                        self.settings.rerun_weight * weight,
                        index,
                        job,
                        _run_detail("rerun", self.context.runs[run_pk], job, reruns=fails),
                    )
                )

    def _same_commit_events(self) -> None:
        """Failed and passed on one commit in one job, in different run attempts."""
        for obs in self.observations.values():
            if obs.state != "M" or len({r.pk for r in (*obs.failed_runs, *obs.passed_runs)}) < 2:
                continue
            self.events.append(
                _Event(
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

    def _isolated_events(self, job: str, sequence: list[_Observation], shape: _Shape) -> None:
        """Failed commits with passes on both sides, in time order and along their branch."""
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
                self.events.append(_Event("isolated", weight, obs.index, job, detail))

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

    def _combine(self, shape: _Shape) -> Verdict:
        settings = self.settings
        events = sorted(self.events, key=lambda e: e.index)
        total = sum(e.weight for e in events)
        half_life = float(settings.min_half_life)
        clean_since = judged = event_points = 0
        flaky_since: str | None = None
        flaky_jobs: list[str] = []
        if events:
            # Counted in the jobs the test flaked in: a flake of one matrix job
            # is not forgiven by passes in the others.
            flaky_jobs = sorted({e.job for e in events})
            judged = sum(len(self.judged_at.get(job, ())) for job in flaky_jobs)
            passed_at = sorted(i for job in flaky_jobs for i in self.passed_at.get(job, ()))
            last = events[-1].index
            event_points = len({e.index for e in events})
            half_life = _half_life(settings, judged, event_points)
            clean_since = len(passed_at) - _count_upto(passed_at, last)
            flaky_since = self._flaky_since(events, half_life, passed_at)
        score = _decayed(total, clean_since, half_life)
        judged = self.results - self.skipped
        streak_jobs = shape.streak_jobs
        status = FAILING if streak_jobs else _status_without_streak(score, self.results, settings)
        counts: dict[str, list[float]] = {}
        for e in events:
            entry = counts.setdefault(e.kind, [0, 0.0])
            entry[0] += 1
            entry[1] += e.weight
        weights = {
            "same_commit": settings.same_commit_weight,
            "rerun": settings.rerun_weight,
            "isolated": settings.isolated_weight,
        }
        components: dict[str, Any] = {
            kind: {"events": int(counts.get(kind, [0, 0.0])[0]), "weight": weight,
                   "evidence": round(counts.get(kind, [0, 0.0])[1], 4)}
            for kind, weight in weights.items()
        }  # fmt: skip
        components.update(
            {
                "recency": _recency(
                    clean_since, half_life, total, flaky_jobs, judged, event_points
                ),
                "failure_rate": round(self.failures / judged, 4) if judged else 0.0,
                "transitions": shape.transitions,
                "failure_streaks": {"count": shape.streaks, "longest": shape.longest},
                "branches_failed": {
                    "count": len(self.failed_branches),
                    "names": list(self.failed_branches)[-_BRANCHES_KEPT:],
                },
                "fingerprints": len(self.fingerprints),
                "outage_failures": self.ignored,
                "skipped": self.skipped,
            }
        )
        if streak_jobs:
            components["failing"] = streak_jobs
        if shape.pending_branches:
            components["pending_branches"] = sorted(shape.pending_branches)
        return Verdict(
            status=status,
            score=round(score, 6),
            results=self.results,
            failures=self.failures,
            evidence_weight=round(total, 6),
            half_life=half_life,
            clean_since=clean_since,
            pending=shape.pending or bool(streak_jobs),
            flaky_since=flaky_since if status == FLAKY else None,
            last_failure_at=self.last_failure.started_iso if self.last_failure else None,
            latest_result_at=self.latest.started_iso if self.latest else None,
            components=components,
            evidence=[e.detail for e in events[-_EVIDENCE_KEPT:]][::-1],
        )

    def _flaky_since(
        self, events: list[_Event], half_life: float, passed_at: list[int]
    ) -> str | None:
        """When the current flaky stretch began: the event that took the score over the threshold."""
        threshold = self.settings.flaky_threshold
        total, since, last_index = 0.0, None, None
        for event in events:
            if since is not None and last_index is not None:
                clean = _count_upto(passed_at, event.index) - _count_upto(passed_at, last_index)
                if _decayed(total, clean, half_life) < threshold:
                    since = None  # recovered in between
            total += event.weight
            last_index = event.index
            if since is None and _decayed(total, 0, half_life) >= threshold:
                since = event.detail.get("at")
        return since


def _status_without_streak(score: float, results: int, settings: ScoringSettings) -> str:
    if score >= settings.flaky_threshold:
        return FLAKY
    return NEW if results < settings.min_results else STABLE


def _skipped(verdict: Verdict) -> int:
    return int(verdict.components.get("skipped", 0))


def _decayed(total: float, clean_since: int, half_life: float) -> float:
    if total <= 0:
        return 0.0
    strength = 1.0 - math.exp(-total)
    return strength * 0.5 ** (clean_since / half_life) if half_life > 0 else strength


def _half_life(settings: ScoringSettings, judged: int, event_points: int) -> float:
    """How many clean results halve the score.

    A multiple of how long the test used to go without flaking: its results in
    the jobs it flaked in over its events, the clean ones since the last event
    included, so that a rare flake is not taken for fixed after a lucky stretch.
    """
    mean_gap = max(1, judged) / max(1, event_points)
    return min(
        float(settings.max_half_life),
        max(float(settings.min_half_life), settings.half_life_gaps * mean_gap),
    )


def _recency(
    clean_since: int,
    half_life: float,
    total: float,
    jobs: list[str],
    judged: int,
    event_points: int,
) -> dict[str, Any]:
    return {
        "clean_since": clean_since,
        "half_life": round(half_life, 1),
        "factor": round(0.5 ** (clean_since / half_life), 4) if total > 0 else 1.0,
        "jobs": jobs,
        "judged": judged,
        "event_points": event_points,
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


def _count_upto(sorted_indexes: list[int], index: int) -> int:
    """How many of the sorted indexes are <= index."""
    return bisect.bisect_right(sorted_indexes, index)


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
