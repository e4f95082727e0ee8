"""The score maths: how weighed events become one number between 0 and 1, and how clean results wear it down.

score = (1 - exp(-sum of event weights)) * 0.5 ** (clean results since the last
event / half-life). The half-life adapts to how often the test used to flake,
and both it and the clean results are counted in the jobs the test flaked in
only, so that passes in the other matrix jobs forgive nothing. These functions
are shared by the full scoring (``analysis.scoring.verdict``) and by the
incremental update (``analysis.scoring.incremental``), so that both land on the
same score.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis.scoring.settings import ScoringSettings
from analysis.scoring.signals import Event


@dataclass(frozen=True, slots=True)
class Score:
    """The score of one test's events, with the recency numbers behind it."""

    value: float
    total: float  # the sum of the event weights, before recency
    half_life: float
    clean_since: int  # passes in the flaky jobs since the last event
    judged: int  # results that count in the flaky jobs
    event_points: int  # distinct results that carried an event
    flaky_jobs: list[str] = field(default_factory=list)
    flaky_since: str | None = None


def combine(
    events: Sequence[Event],
    *,
    judged_at: Mapping[str, list[int]],
    passed_at: Mapping[str, list[int]],
    settings: ScoringSettings,
) -> Score:
    """The score of these events (in time order) given the test's judged and passing results per job."""
    total = sum(e.weight for e in events)
    if not events:
        return Score(
            value=decayed(total, 0, float(settings.min_half_life)),
            total=total,
            half_life=float(settings.min_half_life),
            clean_since=0,
            judged=0,
            event_points=0,
        )
    # Counted in the jobs the test flaked in: a flake of one matrix job is not
    # forgiven by passes in the others.
    flaky_jobs = sorted({e.job for e in events})
    judged = sum(len(judged_at.get(job, ())) for job in flaky_jobs)
    passes = sorted(i for job in flaky_jobs for i in passed_at.get(job, ()))
    event_points = len({e.index for e in events})
    half_life = half_life_of(settings, judged, event_points)
    clean_since = len(passes) - count_upto(passes, events[-1].index)
    return Score(
        value=decayed(total, clean_since, half_life),
        total=total,
        half_life=half_life,
        clean_since=clean_since,
        judged=judged,
        event_points=event_points,
        flaky_jobs=flaky_jobs,
        flaky_since=_flaky_since(events, half_life, passes, settings.flaky_threshold),
    )


def decayed(total: float, clean_since: int, half_life: float) -> float:
    """The score of events weighing ``total`` after ``clean_since`` clean results."""
    if total <= 0:
        return 0.0
    strength = 1.0 - math.exp(-total)
    return strength * 0.5 ** (clean_since / half_life) if half_life > 0 else strength


def half_life_of(settings: ScoringSettings, judged: int, event_points: int) -> float:
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


def recency_components(
    clean_since: int,
    half_life: float,
    total: float,
    jobs: list[str],
    judged: int,
    event_points: int,
) -> dict[str, Any]:
    """``components["recency"]``: what a later incremental update starts from."""
    return {
        "clean_since": clean_since,
        "half_life": round(half_life, 1),
        "factor": round(0.5 ** (clean_since / half_life), 4) if total > 0 else 1.0,
        "jobs": jobs,
        "judged": judged,
        "event_points": event_points,
    }


def count_upto(sorted_indexes: list[int], index: int) -> int:
    """How many of the sorted indexes are <= index."""
    return bisect.bisect_right(sorted_indexes, index)


def _flaky_since(
    events: Sequence[Event], half_life: float, passed_at: list[int], threshold: float
) -> str | None:
    """When the current flaky stretch began: the event that took the score over the threshold."""
    total, since, last_index = 0.0, None, None
    for event in events:
        if since is not None and last_index is not None:
            clean = count_upto(passed_at, event.index) - count_upto(passed_at, last_index)
            if decayed(total, clean, half_life) < threshold:
                since = None  # recovered in between
        total += event.weight
        last_index = event.index
        if since is None and decayed(total, 0, half_life) >= threshold:
            since = event.detail.get("at")
    return since
