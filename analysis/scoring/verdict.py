"""One test's verdict from its whole history: what is stored about it, and how its status is classified.

``score_test`` walks the history for its evidence (``analysis.scoring.signals``),
scores it (``analysis.scoring.maths``) and classifies the test: ``failing`` when
the last commits of a job all failed (a regression, not a flake), ``flaky`` when
its score reaches the threshold, ``new`` when it has too few results to say,
else ``stable``. ``Verdict`` carries the status with the components and
evidence behind it, and enough of the maths for ``analysis.scoring.incremental``
to update it from clean results without reading the history again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis.scoring.history import HistoryContext, ResultRow
from analysis.scoring.maths import combine, recency_components
from analysis.scoring.settings import ScoringSettings
from analysis.scoring.signals import Evidence, collect_evidence
from analysis.scoring.status import TestStatus

_EVIDENCE_KEPT = 5  # most recent events kept for the explanation
_NOTES_KEPT = 3  # most recent failures put down to an incident, after the events
_BRANCHES_KEPT = 5


@dataclass(slots=True)
class Verdict:
    """Everything stored for one test after scoring."""

    status: str  # a TestStatus value; a plain string when read back from the database
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
        return self.status == TestStatus.FLAKY


def score_test(
    rows: Iterable[ResultRow], context: HistoryContext, settings: ScoringSettings
) -> Verdict:
    """Score one test from all its results (any order) and the history around them."""
    return _verdict_of(collect_evidence(rows, context, settings), settings)


def evidence_list(
    events: Sequence[dict[str, Any]], notes: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What ``Verdict.evidence`` keeps: the most recent events, newest first, then the
    most recent failures an incident explained (``incidents.incident_note``), newest first.

    ``events`` and ``notes`` in time order.
    """
    return [*list(events[-_EVIDENCE_KEPT:])[::-1], *list(notes[-_NOTES_KEPT:])[::-1]]


def status_without_streak(score: float, results: int, settings: ScoringSettings) -> TestStatus:
    """The status of a test with no failing streak: what its score and its count of results say."""
    if score >= settings.flaky_threshold:
        return TestStatus.FLAKY
    return TestStatus.NEW if results < settings.min_results else TestStatus.STABLE


def _verdict_of(evidence: Evidence, settings: ScoringSettings) -> Verdict:
    events, shape = evidence.events, evidence.shape
    scored = combine(
        events, judged_at=evidence.judged_at, passed_at=evidence.passed_at, settings=settings
    )
    streak_jobs = shape.streak_jobs
    status = (
        TestStatus.FAILING
        if streak_jobs
        else status_without_streak(scored.value, evidence.results, settings)
    )
    # Every result but skips, outage casualties included. It is also what
    # components["recency"]["judged"] records (not scored.judged, the results of
    # the flaky jobs only), and advance_clean carries on from that number:
    # changing it would change the scores of tests advanced incrementally.
    judged = evidence.results - evidence.skipped
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
            "recency": recency_components(
                scored.clean_since,
                scored.half_life,
                scored.total,
                scored.flaky_jobs,
                judged,
                scored.event_points,
            ),
            "failure_rate": round(evidence.failures / judged, 4) if judged else 0.0,
            "transitions": shape.transitions,
            "failure_streaks": {"count": shape.streaks, "longest": shape.longest},
            "branches_failed": {
                "count": len(evidence.failed_branches),
                "names": evidence.failed_branches[-_BRANCHES_KEPT:],
            },
            "fingerprints": evidence.fingerprints,
            "outage_failures": evidence.ignored,
            "incidents": len(evidence.discounted),
            "skipped": evidence.skipped,
        }
    )
    if streak_jobs:
        components["failing"] = streak_jobs
    if shape.pending_branches:
        components["pending_branches"] = sorted(shape.pending_branches)
    return Verdict(
        status=status,
        score=round(scored.value, 6),
        results=evidence.results,
        failures=evidence.failures,
        evidence_weight=round(scored.total, 6),
        half_life=scored.half_life,
        clean_since=scored.clean_since,
        pending=shape.pending or bool(streak_jobs),
        flaky_since=scored.flaky_since if status == TestStatus.FLAKY else None,
        last_failure_at=evidence.last_failure.started_iso if evidence.last_failure else None,
        latest_result_at=evidence.latest.started_iso if evidence.latest else None,
        components=components,
        evidence=evidence_list([e.detail for e in events], evidence.discounted),
    )
