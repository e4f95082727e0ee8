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
from collections.abc import Callable
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
    truth: dict[str, object]  # the JSON ground truth, without observed counts


def build_plan(
    rng: random.Random, timeline: Timeline, *, tests: int, jobs: tuple[str, ...], flavour: str,
    repo: str,
) -> Plan:  # fmt: skip
    """Choose the suite, each test's behaviour and the outages for ``timeline``."""
    runs, last_main = timeline.runs, len(timeline.main_shas) - 1
    if last_main < 6:
        raise ValueError("the history is too short; use more runs")

    def at(lo: float, hi: float) -> int:  # a main commit index within a share of the history
        return rng.randint(max(1, int(last_main * lo)), max(1, int(last_main * hi)))

    added = max(3, round(0.02 * tests))
    base, new = build_cases(rng, count=tests - added - 1, added=added, flavour=flavour, repo=repo)
    used: set[int] = set()

    def take() -> int:
        while (i := rng.randrange(len(base))) in used:
            pass
        used.add(i)
        return i

    by_key: dict[str, Behaviour] = {}
    present = {case.key: (0, None) for case in (*base, *new)}
    old = base[take()]
    new_name = renamed(old, flavour)
    rename_at, added_at = at(0.5, 0.75), at(0.3, 0.5)
    present[old.key], present[new_name.key] = (0, rename_at), (rename_at, None)
    present.update({case.key: (added_at, None) for case in new})

    for _ in range(max(1, round(0.01 * tests))):
        reason = rng.choice(_SKIP_REASONS).format(n=rng.randint(100, 999))
        by_key[base[take()].key] = Behaviour("skipped", "skipped", skip_reason=reason)

    flaky = max(5, round(0.05 * tests))
    kinds = ["order_dependent"] * (1 if tests < 1000 else 2)
    kinds += ["bursty"] * max(1, flaky // 6) + ["job_specific"] * max(1, flaky // 5)
    kinds = ["random"] * (flaky - len(kinds) - 1) + kinds
    for number, kind in enumerate(kinds):
        case = base[take()]
        # Most flaky tests fail rarely (1-6%), about one in six often (8-30%): the first one
        # always, so every history has an obvious flake.
        low, high = (0.08, 0.30) if number == 0 or rng.random() < 0.15 else (0.01, 0.06)
        rate = math.exp(rng.uniform(math.log(low), math.log(high)))
        beh = Behaviour("flaky", kind, rng.choice(FLAKY_PROFILES), rate=round(rate, 4))
        if kind == "job_specific":
            beh.jobs = frozenset([rng.choice(jobs)])
        elif kind == "bursty":
            beh.rate, beh.burst_rate = round(rate / 10, 4), round(rng.uniform(0.35, 0.6), 4)
            beh.bursts = tuple(sorted(_burst(rng, len(runs)) for _ in range(1 + (len(runs) > 60))))
        elif kind == "order_dependent":
            beh.rate, beh.salt = round(rng.uniform(0.1, 0.25), 4), case.key
        by_key[case.key] = beh
    by_key[rng.choice(new).key] = Behaviour(
        "flaky", "random", rng.choice(FLAKY_PROFILES), rate=round(rng.uniform(0.05, 0.15), 4)
    )
    for _ in range(max(1, round(0.005 * tests))):
        rate = round(rng.uniform(0.08, 0.25), 4)
        window = (0, at(0.4, 0.65))
        beh = Behaviour("fixed_flake", "fixed", rng.choice(FLAKY_PROFILES), rate, window=window)
        by_key[base[take()].key] = beh

    failing, incident = max(2, round(0.02 * tests)), 0
    while failing > 0:
        start = at(0.1, 0.7)
        window = (start, min(last_main, start + rng.randint(2, max(3, last_main // 8))))
        size = 1 if incident == 0 else min(failing, rng.randint(1, 3))
        first = take()
        siblings = [
            i
            for i in range(first + 1, len(base))
            if base[i].classname == base[first].classname and i not in used
        ]
        group = [first, *siblings[: size - 1]]
        used.update(group)
        profile = JOB_PROFILE if incident == 0 else rng.choice(BROKEN_PROFILES)
        values = draw_values(rng)
        for i in group:
            beh = Behaviour("failing", "broken", profile, window=window, values=values)
            beh.jobs = frozenset([jobs[-1]]) if incident == 0 else None
            by_key[base[i].key] = beh
        failing -= len(group)
        incident += 1

    merged = [pr for pr in timeline.prs if pr.merged_main is not None]
    prs = [pr for pr in merged[1:] if len(pr.shas) >= 3] or [p for p in merged if len(p.shas) >= 2]
    if not prs:
        raise ValueError("the history is too short for a pull request with a fix; use more runs")
    pr = rng.choice(prs)
    beh = Behaviour("pr_broken", "pr", PR_PROFILE, pr=pr.number, values=draw_values(rng))
    beh.pr_fixed_commit = rng.randint(min(2, len(pr.shas) - 1), len(pr.shas) - 1)
    by_key[base[take()].key] = beh

    outages = {}
    middle = range(len(runs) // 10, len(runs) - len(runs) // 10)
    for seq in sorted(rng.sample(middle, max(1, round(len(runs) / 200)))):
        share = round(rng.uniform(0.55, 0.9), 4)
        outages[seq] = Outage(rng.choice(jobs), share, rng.choice(OUTAGE_PROFILES))

    cases = sorted((*base, new_name, *new), key=lambda c: (c.file, c.line, c.name))
    plan = Plan(
        cases=cases,
        behaviours={i: by_key[c.key] for i, c in enumerate(cases) if c.key in by_key},
        present=[present[c.key] for c in cases],
        outages=outages,
        truth={},
    )
    plan.truth = _truth(plan, timeline, by_key, old, new_name)
    return plan


def _burst(rng: random.Random, runs: int) -> tuple[int, int]:
    length = rng.randint(max(3, runs // 60), max(4, runs // 20))
    first = rng.randint(0, max(0, runs - length))
    return first, first + length - 1


def _truth(
    plan: Plan, timeline: Timeline, by_key: dict[str, Behaviour], old: Case, new: Case
) -> dict[str, object]:
    runs = timeline.runs

    def commit(main: int) -> dict[str, object]:
        seq = timeline.main_runs[main]
        return {
            "main_commit": main,
            "sha": timeline.main_shas[main],
            "run_id": None if seq is None else runs[seq].run_id,
        }

    tests: dict[str, dict[str, object]] = {}
    for case, (since, until) in zip(plan.cases, plan.present, strict=True):
        beh = by_key.get(case.key)
        entry: dict[str, object] = {
            "category": beh.category if beh else "stable",
            "classname": case.classname,
            "name": case.name,
            "file": case.file,
        }
        if since:
            entry["added_in"] = commit(since)
        if until is not None:
            entry["removed_in"] = commit(until)
        if case.key == old.key:
            entry["renamed_to"] = new.key
        elif case.key == new.key:
            entry["renamed_from"] = old.key
        if beh:
            entry.update(_describe(beh, timeline, commit))
        tests[case.key] = entry
    return {
        "tests": tests,
        "infra_outages": [
            {
                "run_id": runs[seq].run_id,
                "run_attempt": 1,
                "job": outage.job,
                "share": outage.share,
                "message": f"{outage.profile.py_type}: {outage.profile.py_message}",
            }
            for seq, outage in plan.outages.items()
        ],
    }


def _describe(
    beh: Behaviour, timeline: Timeline, commit: Callable[[int], dict[str, object]]
) -> dict[str, object]:
    out: dict[str, object] = {"kind": beh.kind}
    if beh.kind == "skipped":
        out["reason"] = beh.skip_reason
        return out
    out["jobs"] = sorted(beh.jobs) if beh.jobs is not None else None
    out["failure"] = beh.profile.py_type if beh.profile else None
    if beh.kind in ("random", "job_specific", "bursty", "order_dependent", "fixed"):
        out["rate"] = beh.rate  # order_dependent: share of commits it fails on
    if beh.kind == "bursty":
        out["bursts"] = [
            {
                "from_run_id": timeline.runs[first].run_id,
                "to_run_id": timeline.runs[last].run_id,
                "rate": beh.burst_rate,
            }
            for first, last in beh.bursts
        ]
    elif beh.kind == "broken":
        out["broken_in"], out["fixed_in"] = commit(beh.window[0]), commit(beh.window[1])
    elif beh.kind == "fixed":
        out["fixed_in"] = commit(beh.window[1])
    elif beh.kind == "pr":
        pr = next(p for p in timeline.prs if p.number == beh.pr)
        out["pr"], out["branch"] = pr.number, pr.branch
        out["broken_shas"] = pr.shas[: beh.pr_fixed_commit]
        out["fixed_sha"] = pr.shas[beh.pr_fixed_commit]
    return out
