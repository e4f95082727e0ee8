"""The knobs of scoring and classification, with their documented defaults.

A repository may override any of them (``ScoringSettings.from_json``); unknown
keys and values out of range are refused with a message naming the key, so a
typo in the admin never silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ScoringSettings:
    # Evidence weights. The score is 1 - exp(-sum of weight x events), so one
    # event of weight 1.0 gives 0.63 and two of weight 0.5 give the same.
    #: failed and passed on the same commit in the same job (re-run attempts,
    #: push and pull_request runs of one sha): the strongest sign of a flake.
    same_commit_weight: float = 1.0
    #: failed, then passed on an in-run rerun (Surefire flakyFailure/flakyError,
    #: a test reported twice in one job by pytest-rerunfailures or gotestsum).
    rerun_weight: float = 1.0
    #: failed on one commit between passes on the commits before and after it,
    #: in time order and along its branch; half as much when the branch has no
    #: commit on one side. Needs two such failures to call a test flaky.
    isolated_weight: float = 0.5

    #: ``is_flaky`` when the score reaches this.
    flaky_threshold: float = 0.5

    # Failures that coincide with many others in the same job (an outage, a
    # broken runner) say little about the test. A failure's weight is divided
    # by 1 + excess / mass_failure_scale, where excess is the number of other
    # failures in that job beyond the job's usual (median) number.
    mass_failure_scale: float = 3.0
    #: below this share of its weight a failure counts as an outage casualty:
    #: neither flaky evidence nor a pass, simply ignored.
    mass_failure_cutoff: float = 0.2

    # Infrastructure incidents (analysis.scoring.incidents): a job attempt in
    # which many tests failed at once is put down to the machine, and its
    # failures add no evidence. Co-failure: failures beyond the job's usual
    # number, at least incident_min_tests of them and at least incident_share
    # of the job's results (or so many that mass_failure_cutoff ignores them);
    # every failure of the attempt is explained. Shared fingerprint: at least
    # incident_min_tests tests failed with one error that the job did not fail
    # with on the same commit's other attempts nor on the branch's previous
    # commit; those failures are explained.
    #: the fewest tests failing together that make an incident
    incident_min_tests: int = 3
    #: co-failure: failures beyond the usual, as a share of the job's results
    incident_share: float = 0.1

    # Recovery: the score halves every half_life clean results after the last
    # flaky event. The half-life adapts to how often the test used to flake
    # (half_life_gaps times the mean distance between its events, in results
    # of the jobs it flaked in), bounded below and above, so a 1-in-100 flake
    # is not forgiven after a lucky stretch and a fixed frequent flake
    # recovers after about min_half_life clean results.
    half_life_gaps: float = 4.0
    min_half_life: int = 100
    max_half_life: int = 600

    #: broken is not flaky: consecutive commits of a job (three in time order or
    #: on the default branch, two on another branch) that each failed, with at
    #: least this share of their attempts failing (two in three), are a
    #: breakage: a re-run that happened to pass on one of them is no flip, and
    #: none of them is an isolated failure.
    breakage_share: float = 0.66

    #: failing: the last commits of a job (in time order, or on the default
    #: branch) all failed, at least this many of them, and more than the test's
    #: own flake rate makes likely (1% chance).
    failing_streak: int = 3
    #: new: seen in fewer results than this (skips included) and nothing else to say.
    min_results: int = 10

    @classmethod
    def from_json(cls, overrides: dict[str, Any] | None) -> ScoringSettings:
        """Defaults with the given keys replaced; ValueError names a bad key or value."""
        if not overrides:
            return cls()
        if not isinstance(overrides, dict):
            raise ValueError("scoring settings must be a JSON object")
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise ValueError(f"unknown scoring setting {key!r}; known: {', '.join(known)}")
            wanted = int if known[key].type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"scoring setting {key!r} must be a number, not {value!r}")
            if wanted is int and value != int(value):
                raise ValueError(f"scoring setting {key!r} must be a whole number")
            values[key] = wanted(value)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        for name in ("same_commit_weight", "rerun_weight", "isolated_weight"):
            if not 0 <= getattr(self, name) <= 10:
                raise ValueError(f"{name} must be between 0 and 10")
        if not 0 < self.flaky_threshold < 1:
            raise ValueError("flaky_threshold must be between 0 and 1 (exclusive)")
        if self.mass_failure_scale <= 0:
            raise ValueError("mass_failure_scale must be positive")
        if not 0 <= self.mass_failure_cutoff < 1:
            raise ValueError("mass_failure_cutoff must be between 0 and 1")
        if self.incident_min_tests < 2:
            raise ValueError("incident_min_tests must be at least 2")
        if not 0 <= self.incident_share <= 1:
            raise ValueError("incident_share must be between 0 and 1")
        if not 0 < self.breakage_share <= 1:
            raise ValueError("breakage_share must be above 0 and at most 1")
        if self.half_life_gaps <= 0:
            raise ValueError("half_life_gaps must be positive")
        if not 1 <= self.min_half_life <= self.max_half_life:
            raise ValueError("min_half_life must be at least 1 and at most max_half_life")
        if self.failing_streak < 1:
            raise ValueError("failing_streak must be at least 1")
        if self.min_results < 0:
            raise ValueError("min_results must not be negative")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
