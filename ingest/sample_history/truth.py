"""The ground truth of the sample history: what is wrong with which test, and when.

Every test gets a category: ``stable``; ``flaky`` (kinds ``random``, ``job_specific``,
``bursty`` — failing in clusters of runs — and ``order_dependent`` — failing reproducibly on
some commits); ``failing`` (broken on ``main`` from one commit until a later fix, possibly in
one matrix job only, some of them broken on most attempts only, so that a re-run now and then
happens to pass); ``pr_broken`` (broken on a pull request's first commits, fixed before the
merge); ``fixed_flake`` (flaky until a fix lands on ``main``); ``skipped`` (always skipped).
One test is renamed and a new module is added mid-history.

Infrastructure fails tests too, whatever their category (:class:`Incident`): a runner dies or
a service container is down (10% to 100% of one job's tests error in one attempt, mostly
with one error, and the run is re-run), a noisy neighbour (a few percent of one job's tests
time out together), an outage of about an hour over several runs and jobs, and a service
that some tests use is down (a partial outage, a handful of tests with one error). A test
only infrastructure hits keeps its category. :class:`Behaviour` decides, per run, job and
test, whether the test fails for its own reasons.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ingest.sample_history.catalogue import (
    BROKEN_PROFILES,
    FLAKY_PROFILES,
    INFRA_PROFILES,
    INFRA_SECONDARY,
    JOB_PROFILE,
    NEIGHBOUR_PROFILE,
    OUTAGE_PROFILES,
    PR_PROFILE,
    SERVICE_AREAS,
    SERVICE_PROFILES,
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
    fail_rate: float = 1.0  # broken, pr: chance each attempt fails while broken
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
            return self._broken(rng) if self.window[0] <= run.main < self.window[1] else None
        if kind == "pr":
            broken = run.pr == self.pr and run.pr_commit < self.pr_fixed_commit
            return self._broken(rng) if broken else None
        if kind == "fixed" and run.main < self.window[1] and rng.random() < self.rate:
            return self.rate
        return None

    def _broken(self, rng: random.Random) -> float | None:
        """Broken code fails every attempt, or (broken on most attempts) nearly every one."""
        if self.fail_rate >= 1:
            return 1.0
        return self.fail_rate if rng.random() < self.fail_rate else None


@dataclass(frozen=True)
class Incident:
    """Infrastructure failing tests of one job in the first attempt of one run."""

    kind: str  # runner | noisy_neighbour | outage | partial
    job: str
    share: float  # chance each test it reaches fails
    profile: FailureProfile  # what most of them report
    values: dict[str, object]  # the numbers in its messages
    element: str = "error"  # error: setup failed; failure: the test itself timed out
    secondary: FailureProfile | None = None  # what some of them report instead
    secondary_share: float = 0.0
    tests: frozenset[int] | None = None  # partial: the cases that use the service; None: all
    service: str = ""
    rerun: bool = True  # the run is re-run (in repositories that re-run at all)
    rerun_after: datetime | None = None  # not before the outage is over


@dataclass
class Plan:
    cases: list[Case]  # every distinct test, in report order
    behaviours: dict[int, Behaviour]  # by case index; stable tests have none
    present: list[tuple[int, int | None]]  # main commits [from, until) a case exists in
    outages: dict[int, list[Incident]]  # by run seq
    truth_tests: dict[str, dict[str, object]]  # ground truth per test key, as JSON
    truth_outages: list[dict[str, object]]  # one per incident, in run order


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
        cases = sorted(
            (*self.base, self.renamed, *self.new), key=lambda c: (c.file, c.line, c.name)
        )
        outages = self.plan_incidents(cases)
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
                    "kind": incident.kind,
                    "run_id": runs[seq].run_id,
                    "run_attempt": 1,
                    "job": incident.job,
                    "share": incident.share,
                    "message": self.message(incident.profile),
                    **({"service": incident.service} if incident.service else {}),
                }
                for seq in sorted(outages)
                for incident in outages[seq]
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
            # Some breakages are races the change made likely, not certain: a re-run now
            # and then happens to pass while the test is broken on most attempts.
            fail_rate = 1.0 if incident == 0 or rng.random() < 0.6 else _mostly(rng)
            for i in group:
                beh = Behaviour("failing", "broken", profile, window=(start, fixed), values=values)
                beh.jobs = frozenset([self.jobs[-1]]) if incident == 0 else None
                beh.fail_rate = fail_rate
                self.by_key[base[i].key] = beh
            failing -= len(group)
            incident += 1

    def plan_pr_broken(self) -> None:
        """Pull requests whose early commits break a test; a later commit fixes it before merge."""
        rng = self.rng
        merged = [pr for pr in self.timeline.prs if pr.merged_main is not None]
        prs = [p for p in merged[1:] if len(p.shas) >= 3] or [p for p in merged if len(p.shas) > 1]
        if not prs:
            raise ValueError("the history is too short for a pull request with a fix")
        for number, pr in enumerate(
            rng.sample(prs, min(len(prs), max(1, round(self.tests / 200))))
        ):
            beh = Behaviour("pr_broken", "pr", PR_PROFILE, pr=pr.number, values=draw_values(rng))
            beh.pr_fixed_commit = rng.randint(min(2, len(pr.shas) - 1), len(pr.shas) - 1)
            beh.fail_rate = 1.0 if number == 0 or rng.random() < 0.5 else _mostly(rng)
            self.by_key[self.base[self.take()].key] = beh

    def plan_incidents(self, cases: list[Case]) -> dict[int, list[Incident]]:
        """Infrastructure incidents, by run seq: every kind at least once, at its own rate."""
        rng, runs, jobs = self.rng, self.timeline.runs, self.jobs
        middle = list(range(len(runs) // 10, len(runs) - len(runs) // 10))
        incidents: dict[int, list[Incident]] = {}
        for _ in range(1 + len(runs) // 600):
            self.plan_outage(incidents, middle)
        free = [seq for seq in middle if seq not in incidents]
        count = {
            "runner": max(1, round(len(runs) / 60)),
            "noisy_neighbour": max(1, round(len(runs) / 100)),
            "partial": max(1, round(len(runs) / 75)),
        }
        chosen = rng.sample(free, min(len(free), sum(count.values())))
        kinds = [kind for kind, n in count.items() for _ in range(n)]
        # The same fragile service containers go down again and again.
        fragile = self.service_groups(cases)
        fragile = rng.sample(fragile, min(len(fragile), rng.randint(1, 2)))
        for seq, kind in zip(chosen, kinds, strict=False):
            job = rng.choice(jobs)
            if kind == "runner":
                incident = Incident(
                    "runner", job, round(rng.uniform(0.1, 1.0), 4), rng.choice(INFRA_PROFILES),
                    draw_values(rng), secondary=rng.choice(INFRA_SECONDARY),
                    secondary_share=round(rng.uniform(0.0, 0.15), 4),
                )  # fmt: skip
            elif kind == "noisy_neighbour":
                incident = Incident(
                    "noisy_neighbour", job, round(rng.uniform(0.015, 0.05), 4), NEIGHBOUR_PROFILE,
                    draw_values(rng), element="failure", secondary=FLAKY_PROFILES[3],
                    secondary_share=0.2, rerun=False,
                )  # fmt: skip
            else:
                service, tests = rng.choice(fragile)
                incident = Incident(
                    "partial", job, round(rng.uniform(0.6, 1.0), 4), SERVICE_PROFILES[service],
                    draw_values(rng), tests=tests, service=service,
                )  # fmt: skip
            incidents.setdefault(seq, []).append(incident)
        return incidents

    def plan_outage(self, incidents: dict[int, list[Incident]], middle: list[int]) -> None:
        """About an hour in which every run's jobs (most of them) lose a service."""
        rng, runs = self.rng, self.timeline.runs
        minutes = rng.uniform(50, 80)
        for _ in range(20):  # an hour that holds several runs
            first = rng.choice(middle)
            end = runs[first].started_at + timedelta(minutes=minutes)
            window = [s for s in range(first, len(runs)) if runs[s].started_at < end]
            if len(window) >= 2 and not any(s in incidents for s in window):
                break
        jobs = [job for job in self.jobs if rng.random() < 0.8] or [rng.choice(self.jobs)]
        profile, values = rng.choice(OUTAGE_PROFILES), draw_values(rng)
        after = end + timedelta(minutes=rng.uniform(5, 40))
        for seq in window:
            if seq in incidents:
                continue
            incidents[seq] = [
                Incident(
                    "outage",
                    job,
                    round(rng.uniform(0.3, 0.95), 4),
                    profile,
                    values,
                    rerun_after=after,
                )
                for job in jobs
            ]

    def service_groups(self, cases: list[Case]) -> list[tuple[str, frozenset[int]]]:
        """Services with the cases that use one: the tests of one area that depends on it (a
        handful, at least three when the suite has that many)."""
        groups = []
        for service, areas in SERVICE_AREAS.items():
            for area in areas:
                marks = (f"test_{area}.", f".{area.replace('_', '')}.")
                tests = frozenset(
                    i
                    for i, case in enumerate(cases)
                    if any(m in case.file or m in f".{case.classname}." for m in marks)
                )
                groups.append((service, tests))
        usable = [group for group in groups if len(group[1]) >= 3]
        return usable or [max(groups, key=lambda group: len(group[1]))]

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
            out["fail_rate"] = beh.fail_rate
        elif beh.kind == "fixed":
            out["fixed_in"] = self.commit(beh.window[1])
        elif beh.kind == "pr":
            pr = next(p for p in self.timeline.prs if p.number == beh.pr)
            out["pr"], out["branch"] = pr.number, pr.branch
            out["broken_shas"] = pr.shas[: beh.pr_fixed_commit]
            out["fixed_sha"] = pr.shas[beh.pr_fixed_commit]
            out["fail_rate"] = beh.fail_rate
        return out


def _mostly(rng: random.Random) -> float:
    """The failure rate of code broken on most attempts."""
    return round(rng.uniform(0.9, 0.97), 4)


def _burst(rng: random.Random, runs: int) -> tuple[int, int]:
    length = rng.randint(max(3, runs // 60), max(4, runs // 20))
    first = rng.randint(0, max(0, runs - length))
    return first, first + length - 1
