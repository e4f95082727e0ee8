"""The made-up git and CI timeline of the sample history: commits, pull requests and runs.

``main`` receives direct pushes and the merge commits of pull requests, each one a ``push``
run. Pull requests live on ``feature/…`` branches; every commit pushed to one gets a
``pull_request`` run, and for some branches a ``push`` run as well (the same sha twice).
Pull request runs test the merge with the current ``main``, so each run records the index
of the ``main`` commit its code is based on; the ground truth keys breakages on it. Runs
happen on weekdays in working hours, with GitHub-sized, increasing run ids.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ingest.sample_history.catalogue import AREAS

_TOPICS = (
    "refactor", "cleanup", "pagination", "bulk-actions", "caching", "validation", "timezones",
    "retries", "performance", "api-v2", "permissions", "export", "audit-trail", "new-ui",
)  # fmt: skip
_MAX_OPEN_PRS = 4


@dataclass(frozen=True)
class Run:
    """One workflow run (its attempts share all of this)."""

    seq: int  # position in the timeline, 0-based
    run_id: int
    sha: str
    branch: str
    event: str  # "push" | "pull_request"
    started_at: datetime
    main: int  # index of the main commit the tested code is based on (0: before the history)
    pr: int | None = None  # pull request number, for runs of a feature branch
    pr_commit: int = -1  # position of the commit in its pull request


@dataclass
class PullRequest:
    number: int
    branch: str
    planned: int  # commits the author will push before it is ready
    pushes: bool  # the branch also triggers push runs
    shas: list[str] = field(default_factory=list)
    merged_main: int | None = None  # index of its merge commit on main
    closed: bool = False


@dataclass
class Timeline:
    runs: list[Run]
    main_shas: list[str]  # index 0 is the commit the history starts from
    main_runs: list[int | None]  # seq of the push run of each main commit
    prs: list[PullRequest]


def build_timeline(rng: random.Random, *, runs: int, start: datetime) -> Timeline:
    """Simulate developers pushing until ``runs`` workflow runs exist."""
    builder = _Builder(rng, runs, start)
    builder.run()
    return Timeline(builder.runs, builder.main_shas, builder.main_runs, builder.prs)


class _Builder:
    def __init__(self, rng: random.Random, limit: int, start: datetime) -> None:
        self.rng = rng
        self.limit = limit
        self.now = start
        self.run_id = 17_300_000_000 + rng.randrange(10**8)
        self.pr_number = rng.randint(200, 900)
        self.runs: list[Run] = []
        self.main_shas = [self._sha()]
        self.main_runs: list[int | None] = [None]
        self.prs: list[PullRequest] = []
        self.open: list[PullRequest] = []
        self.branches: set[str] = set()

    def _sha(self) -> str:
        return f"{self.rng.getrandbits(160):040x}"

    def run(self) -> None:
        rng = self.rng
        while len(self.runs) < self.limit:
            self._tick()
            ready = [pr for pr in self.open if len(pr.shas) >= pr.planned]
            busy = [pr for pr in self.open if len(pr.shas) < pr.planned]
            roll = rng.random()
            if ready and roll < 0.35:
                self._finish(ready[0])
            elif not self.open or (len(self.open) < _MAX_OPEN_PRS and roll < 0.5):
                self._open_pr()
            elif busy and roll < 0.92:
                self._commit(rng.choice(busy))
            else:
                self._push_main(self._sha())

    def _tick(self) -> None:
        """Advance the clock; people push on weekdays between 07:00 and 19:00."""
        self.now += timedelta(minutes=self.rng.expovariate(1 / 40))
        if self.now.hour >= 19 or self.now.hour < 7:
            days = 1 if self.now.hour >= 19 else 0
            self.now = (self.now + timedelta(days=days)).replace(hour=7, minute=0, second=0)
            self.now += timedelta(minutes=self.rng.uniform(0, 90))
        while self.now.weekday() >= 5:
            self.now += timedelta(days=1)

    def _add_run(
        self, sha: str, branch: str, event: str, pr: PullRequest | None, *, paired: bool = False
    ) -> int:
        # Other workflows of the organisation take ids in between; a paired run (push and
        # pull_request for the same commit) starts a moment after its twin.
        self.run_id += self.rng.randint(1, 2) if paired else self.rng.randint(3, 900)
        seq = len(self.runs)
        self.runs.append(
            Run(
                seq=seq,
                run_id=self.run_id,
                sha=sha,
                branch=branch,
                event=event,
                started_at=self.now.replace(microsecond=0),
                main=len(self.main_shas) - 1,
                pr=pr.number if pr else None,
                pr_commit=len(pr.shas) - 1 if pr else -1,
            )
        )
        return seq

    def _push_main(self, sha: str) -> None:
        self.main_shas.append(sha)
        self.main_runs.append(self._add_run(sha, "main", "push", None))

    def _open_pr(self) -> None:
        rng = self.rng
        area = rng.choice(AREAS)[0].replace("_", "-")
        branch = f"feature/{area}-{rng.choice(_TOPICS)}"
        suffix = 2
        while branch in self.branches:
            branch = f"feature/{area}-{rng.choice(_TOPICS)}-{suffix}"
            suffix += 1
        self.branches.add(branch)
        self.pr_number += rng.randint(1, 3)
        # The first pull request is long enough to carry a bug that gets fixed before merge.
        planned = 4 if not self.prs else min(8, 1 + int(rng.expovariate(1 / 1.6)))
        pr = PullRequest(self.pr_number, branch, planned, pushes=rng.random() < 0.25)
        self.prs.append(pr)
        self.open.append(pr)
        self._commit(pr)

    def _commit(self, pr: PullRequest) -> None:
        pr.shas.append(self._sha())
        paired = pr.pushes and len(self.runs) < self.limit - 1
        if paired:
            self._add_run(pr.shas[-1], pr.branch, "push", pr)
        self._add_run(pr.shas[-1], pr.branch, "pull_request", pr, paired=paired)

    def _finish(self, pr: PullRequest) -> None:
        self.open.remove(pr)
        if pr is not self.prs[0] and self.rng.random() < 0.08:
            pr.closed = True  # abandoned, no run
            return
        pr.merged_main = len(self.main_shas)
        self._push_main(self._sha())
