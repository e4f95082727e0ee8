"""The ground truth of the sample history: what is wrong with which test, and when.

Every test gets a category: ``stable``; ``flaky`` (kinds ``random``, ``job_specific``,
``bursty`` — failing in clusters of runs — and ``order_dependent`` — failing reproducibly on
some commits); ``failing`` (broken on ``main`` from one commit until a later fix, possibly in
one matrix job only); ``pr_broken`` (broken on one pull request's commits, fixed before the
merge); ``fixed_flake`` (flaky until a fix lands on ``main``); ``skipped`` (always skipped).
One test is renamed and a new module is added mid-history; a few runs suffer an infra outage
in one job. :class:`Behaviour` decides, per run, job and test, whether the test fails.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field

from ingest.sample_history.catalogue import (
    BROKEN_PROFILES,
    FLAKY_PROFILES,
    JOB_PROFILE,
    OUTAGE_PROFILES,
    PR_PROFILE,
    Case,
    FailureProfile,
    build_cases,
    draw_values,
    renamed,
)
from ingest.sample_history.timeline import Run, Timeline

_SKIP_REASONS = (
    "requires STRIPE_TEST_KEY",
    "needs Elasticsearch 8 (run with --with-search)",
    "flaky on CI, see #{n}",
    "not implemented for multi-currency yet",
)


@dataclass
class Behaviour:
    """How one non-stable test behaves over the history."""

    category: str
    kind: str
    profile: FailureProfile | None = None
    rate: float = 0.0
    jobs: frozenset[str] | None = None  # None: every job
    bursts: tuple[tuple[int, int], ...] = ()  # inclusive ranges of run seq
    burst_rate: float = 0.0
    window: tuple[int, int] = (0, 0)  # broken for main commits in [from, to)
    pr: int | None = None
    pr_fixed_commit: int = 0
    salt: str = ""
    values: dict[str, object] = field(default_factory=dict)  # fixed message of a hard failure
    skip_reason: str = ""

    def failure(self, run: Run, job: str, rng: random.Random) -> float | None:
        """None if the test passes; else the chance an immediate retry fails too (1.0: always)."""
        if self.jobs is not None and job not in self.jobs:
            return None
        kind = self.kind
        if kind in ("random", "job_specific"):
            return self.rate if rng.random() < self.rate else None
        if kind == "bursty":
            rate = self.rate
            for first, last in self.bursts:
                if first <= run.seq <= last:
                    rate = self.burst_rate
            return rate if rng.random() < rate else None
        if kind == "order_dependent":
            hit = zlib.crc32(f"{run.sha}:{self.salt}".encode()) / 2**32 < self.rate
            return 1.0 if hit else None
        if kind == "broken":
            return 1.0 if self.window[0] <= run.main < self.window[1] else None
        if kind == "pr":
            return 1.0 if run.pr == self.pr and run.pr_commit < self.pr_fixed_commit else None
        if kind == "fixed" and run.main < self.window[1] and rng.random() < self.rate:
            return self.rate
        return None


@dataclass(frozen=True)
class Outage:
    job: str
    share: float  # chance each test of the job errors
    profile: FailureProfile


@dataclass
class Plan:
    cases: list[Case]  # every distinct test, in report order
    behaviours: dict[int, Behaviour]  # by case index; stable tests have none
    present: list[tuple[int, int | None]]  # main commits [from, until) a case exists in
    outages: dict[int, Outage]  # by run seq
    truth_tests: dict[str, dict[str, object]]  # ground truth per test key, as JSON
    truth_outages: list[dict[str, object]]


def build_plan(
    rng: random.Random, timeline: Timeline, *, tests: int, jobs: tuple[str, ...], flavour: str,
    repo: str,
) -> Plan:  # fmt: skip
    """Choose the suite, each test's behaviour and the outages for ``timeline``."""
    return _Planner(rng, timeline, tests, jobs, flavour, repo).plan()


class _Planner:
    def __init__(
        self, rng: random.Random, timeline: Timeline, tests: int, jobs: tuple[str, ...],
        flavour: str, repo: str,
    ) -> None:  # fmt: skip
        self.rng, self.timeline, self.tests, self.jobs = rng, timeline, tests, jobs
        self.flavour = flavour
        self.last_main = len(timeline.main_shas) - 1
        if self.last_main < 6:
            raise ValueError("the history is too short; use more runs")
        self.added = max(3, round(0.02 * tests))
        self.base, self.new = build_cases(
            rng, count=tests - self.added - 1, added=self.added, flavour=flavour, repo=repo
        )
        self.used: set[int] = set()
        self.by_key: dict[str, Behaviour] = {}
        self.present: dict[str, tuple[int, int | None]] = {
            case.key: (0, None) for case in (*self.base, *self.new)
        }
        self.old = self.base[self.take()]
        self.renamed = renamed(self.old, flavour)

    def at(self, low: float, high: float) -> int:
        """A main commit index between two shares of the history (never the initial one)."""
        last = self.last_main
        return self.rng.randint(max(1, int(last * low)), max(1, int(last * high)))

    def take(self) -> int:
        """A random test present from the start that has no behaviour yet."""
        while (index := self.rng.randrange(len(self.base))) in self.used:
            pass
        self.used.add(index)
        return index

    def plan(self) -> Plan:
        rename_at, added_at = self.at(0.5, 0.75), self.at(0.3, 0.5)
        self.present[self.old.key] = (0, rename_at)
        self.present[self.renamed.key] = (rename_at, None)
        self.present.update({case.key: (added_at, None) for case in self.new})
        self.plan_skipped()
        self.plan_flaky()
        self.plan_fixed_flakes()
        self.plan_failing()
        self.plan_pr_broken()
        outages = self.plan_outages()
        cases = sorted(
            (*self.base, self.renamed, *self.new), key=lambda c: (c.file, c.line, c.name)
        )
        behaviours = {i: self.by_key[c.key] for i, c in enumerate(cases) if c.key in self.by_key}
        present = [self.present[c.key] for c in cases]
        runs = self.timeline.runs
        return Plan(
            cases=cases,
            behaviours=behaviours,
            present=present,
            outages=outages,
            truth_tests=self.describe(cases, present),
            truth_outages=[
                {
                    "run_id": runs[seq].run_id,
                    "run_attempt": 1,
                    "job": outage.job,
                    "share": outage.share,
                    "message": self.message(outage.profile),
                }
                for seq, outage in outages.items()
            ],
        )

    def plan_skipped(self) -> None:
        for _ in range(max(1, round(0.01 * self.tests))):
            reason = self.rng.choice(_SKIP_REASONS).format(n=self.rng.randint(100, 999))
            self.by_key[self.base[self.take()].key] = Behaviour(
                "skipped", "skipped", skip_reason=reason
            )

    def plan_flaky(self) -> None:
        rng, runs = self.rng, len(self.timeline.runs)
        flaky = max(5, round(0.05 * self.tests))
        kinds = ["order_dependent"] * (1 if self.tests < 1000 else 2)
        kinds += ["bursty"] * max(1, flaky // 6) + ["job_specific"] * max(1, flaky // 5)
        kinds = ["random"] * (flaky - len(kinds) - 1) + kinds  # the last one is a new test
        for number, kind in enumerate(kinds):
            case = self.base[self.take()]
            # Most flaky tests fail rarely (1-6%), about one in six often (8-30%): the first
            # one always, so every history has an obvious flake.
            low, high = (0.08, 0.30) if number == 0 or rng.random() < 0.15 else (0.01, 0.06)
            rate = math.exp(rng.uniform(math.log(low), math.log(high)))
            beh = Behaviour("flaky", kind, rng.choice(FLAKY_PROFILES), rate=round(rate, 4))
            if kind == "job_specific":
                beh.jobs = frozenset([rng.choice(self.jobs)])
            elif kind == "bursty":
                beh.rate, beh.burst_rate = round(rate / 10, 4), round(rng.uniform(0.35, 0.6), 4)
                beh.bursts = tuple(sorted(_burst(rng, runs) for _ in range(1 + (runs > 60))))
            elif kind == "order_dependent":
                beh.rate, beh.salt = round(rng.uniform(0.1, 0.25), 4), case.key
            self.by_key[case.key] = beh
        self.by_key[rng.choice(self.new).key] = Behaviour(
            "flaky", "random", rng.choice(FLAKY_PROFILES), rate=round(rng.uniform(0.05, 0.15), 4)
        )

    def plan_fixed_flakes(self) -> None:
        for _ in range(max(1, round(0.005 * self.tests))):
            rate = round(self.rng.uniform(0.08, 0.25), 4)
            profile = self.rng.choice(FLAKY_PROFILES)
            beh = Behaviour("fixed_flake", "fixed", profile, rate, window=(0, self.at(0.4, 0.65)))
            self.by_key[self.base[self.take()].key] = beh

    def plan_failing(self) -> None:
        """Incidents: a commit breaks one to three tests of a class until a later fix.

        The first incident breaks one test in the last matrix job only.
        """
        rng, base = self.rng, self.base
        failing, incident = max(2, round(0.02 * self.tests)), 0
        while failing > 0:
            start = self.at(0.1, 0.7)
            fixed = min(self.last_main, start + rng.randint(2, max(3, self.last_main // 8)))
            size = 1 if incident == 0 else min(failing, rng.randint(1, 3))
            first = self.take()
            siblings = [
                i
                for i in range(first + 1, len(base))
                if base[i].classname == base[first].classname and i not in self.used
            ]
            group = [first, *siblings[: size - 1]]
            self.used.update(group)
            profile = JOB_PROFILE if incident == 0 else rng.choice(BROKEN_PROFILES)
            values = draw_values(rng)
            for i in group:
                beh = Behaviour("failing", "broken", profile, window=(start, fixed), values=values)
                beh.jobs = frozenset([self.jobs[-1]]) if incident == 0 else None
                self.by_key[base[i].key] = beh
            failing -= len(group)
            incident += 1

    def plan_pr_broken(self) -> None:
        """A pull request's early commits break a test; a later commit fixes it before merge."""
        merged = [pr for pr in self.timeline.prs if pr.merged_main is not None]
        prs = [p for p in merged[1:] if len(p.shas) >= 3] or [p for p in merged if len(p.shas) > 1]
        if not prs:
            raise ValueError("the history is too short for a pull request with a fix")
        pr = self.rng.choice(prs)
        beh = Behaviour("pr_broken", "pr", PR_PROFILE, pr=pr.number, values=draw_values(self.rng))
        beh.pr_fixed_commit = self.rng.randint(min(2, len(pr.shas) - 1), len(pr.shas) - 1)
        self.by_key[self.base[self.take()].key] = beh

    def plan_outages(self) -> dict[int, Outage]:
        runs, rng = len(self.timeline.runs), self.rng
        middle = range(runs // 10, runs - runs // 10)
        outages = {}
        for seq in sorted(rng.sample(middle, max(1, round(runs / 200)))):
            share = round(rng.uniform(0.55, 0.9), 4)
            outages[seq] = Outage(rng.choice(self.jobs), share, rng.choice(OUTAGE_PROFILES))
        return outages

    def message(self, profile: FailureProfile) -> str:
        """The failure as this flavour reports it (templates left unfilled)."""
        if self.flavour == "surefire":
            return f"{profile.java_type}: {profile.java_message}"
        return f"{profile.py_type}: {profile.py_message}"

    def commit(self, main: int) -> dict[str, object]:
        seq = self.timeline.main_runs[main]
        return {
            "main_commit": main,
            "sha": self.timeline.main_shas[main],
            "run_id": None if seq is None else self.timeline.runs[seq].run_id,
        }

    def describe(
        self, cases: list[Case], present: list[tuple[int, int | None]]
    ) -> dict[str, dict[str, object]]:
        tests: dict[str, dict[str, object]] = {}
        for case, (since, until) in zip(cases, present, strict=True):
            beh = self.by_key.get(case.key)
            entry: dict[str, object] = {
                "category": beh.category if beh else "stable",
                "classname": case.classname,
                "name": case.name,
                "file": case.file,
            }
            if since:
                entry["added_in"] = self.commit(since)
            if until is not None:
                entry["removed_in"] = self.commit(until)
            if case.key == self.old.key:
                entry["renamed_to"] = self.renamed.key
            elif case.key == self.renamed.key:
                entry["renamed_from"] = self.old.key
            if beh:
                entry.update(self.behaviour(beh))
            tests[case.key] = entry
        return tests

    def behaviour(self, beh: Behaviour) -> dict[str, object]:
        out: dict[str, object] = {"kind": beh.kind}
        if beh.kind == "skipped":
            out["reason"] = beh.skip_reason
            return out
        out["jobs"] = sorted(beh.jobs) if beh.jobs is not None else None
        if beh.profile:
            out["failure"] = self.message(beh.profile).split(":", 1)[0]
        if beh.kind in ("random", "job_specific", "bursty", "order_dependent", "fixed"):
            out["rate"] = beh.rate  # order_dependent: share of commits it fails on
        if beh.kind == "bursty":
            runs = self.timeline.runs
            out["bursts"] = [
                {"from_run_id": runs[a].run_id, "to_run_id": runs[b].run_id, "rate": beh.burst_rate}
                for a, b in beh.bursts
            ]
        elif beh.kind == "broken":
            out["broken_in"], out["fixed_in"] = (
                self.commit(beh.window[0]),
                self.commit(beh.window[1]),
            )
        elif beh.kind == "fixed":
            out["fixed_in"] = self.commit(beh.window[1])
        elif beh.kind == "pr":
            pr = next(p for p in self.timeline.prs if p.number == beh.pr)
            out["pr"], out["branch"] = pr.number, pr.branch
            out["broken_shas"] = pr.shas[: beh.pr_fixed_commit]
            out["fixed_sha"] = pr.shas[beh.pr_fixed_commit]
        return out


def _burst(rng: random.Random, runs: int) -> tuple[int, int]:
    length = rng.randint(max(3, runs // 60), max(4, runs // 20))
    first = rng.randint(0, max(0, runs - length))
    return first, first + length - 1
