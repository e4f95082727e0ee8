"""Keeping verdicts up to date from results that add no evidence, without reading the history again.

Most results of most runs are passes, and a pass can only wear a score down:
the clean-run decay of ``analysis.scoring.maths``, no new event. ``quiet_tally``
is the one rule for telling such results from the ones that may add evidence;
``analyze_run`` asks it about one run's results of each test and the recompute
asks it about each test's whole history, so both agree with the full scoring on
which tests need a look at their history. ``advance_clean`` applies quiet
results to a stored verdict, and ``quiet_verdict`` is the verdict of a test
whose whole history is quiet: both land where ``score_test`` would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from analysis.scoring.history import HistoryContext
from analysis.scoring.incidents import incident_at, incident_note, note_order
from analysis.scoring.maths import decayed, half_life_of, recency_components
from analysis.scoring.settings import ScoringSettings
from analysis.scoring.status import TestStatus
from analysis.scoring.verdict import Verdict, evidence_list, status_without_streak
from ingest.junit import FAILED_OUTCOMES, Outcome


class ResultGroup(NamedTuple):
    """Results of one test with one outcome in one job, as ``quiet_tally`` reads them.

    A group may be a single result or many counted together by the database.
    ``run_pk`` is the run of a failure (whether an incident explains it
    depends on its run); results of other outcomes may be counted across runs
    with ``run_pk`` None. A failure group without its run is evidence.
    ``fingerprint`` is the failures' fingerprint when the caller grouped by it;
    without it, only an incident that explains every failure of its job
    attempt makes the group quiet (one explained by a shared fingerprint needs
    a full look, which reads the fingerprints).
    """

    outcome: str
    job: str
    run_pk: int | None = None
    results: int = 1
    flaky_reruns: int = 0  # the most in-run reruns of any result in the group
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class QuietTally:
    """How results that add no evidence count: what ``advance_clean`` and ``quiet_verdict`` take."""

    passes: dict[str, int] = field(default_factory=dict)  # per job
    skipped: int = 0
    ignored_failures: int = 0  # failures ignored as outage casualties
    #: the evidence notes of those failures (one per job attempt), in time
    #: order: what ``advance_clean`` and ``quiet_verdict`` take as ``discounted``
    discounted: tuple[dict[str, Any], ...] = ()

    @property
    def results(self) -> int:
        return sum(self.passes.values()) + self.skipped + self.ignored_failures


def quiet_tally(
    groups: Iterable[ResultGroup], context: HistoryContext, settings: ScoringSettings
) -> QuietTally | None:
    """The tally of these results of one test when they add no evidence; None when they may.

    Evidence: any result with an in-run rerun, and any failure or error that no
    infrastructure incident explains (``analysis.scoring.incidents``). Skips and
    every other outcome are quiet, as the walk of ``analysis.scoring.signals``
    counts them (skipped, else passed). The caller still owes the checks that
    need more than these results: a pending verdict, a pass on a commit the
    test failed on.
    """
    passes: dict[str, int] = {}
    skipped = ignored = 0
    notes: dict[tuple[int, str], dict[str, Any]] = {}
    for group in groups:
        if group.flaky_reruns:
            return None
        if group.outcome in FAILED_OUTCOMES:
            run_pk = group.run_pk
            if run_pk is None:
                return None
            incident = incident_at(context, settings, run_pk, group.job)
            if incident is None or not incident.explains(group.fingerprint):
                return None
            ignored += group.results
            if (run_pk, group.job) not in notes:
                run = context.runs[run_pk]
                notes[(run_pk, group.job)] = incident_note(incident, run, group.fingerprint)
        elif group.outcome == Outcome.SKIPPED:
            skipped += group.results
        else:
            passes[group.job] = passes.get(group.job, 0) + group.results
    return QuietTally(
        passes=passes,
        skipped=skipped,
        ignored_failures=ignored,
        discounted=tuple(sorted(notes.values(), key=note_order)),
    )


def advance_clean(
    verdict: Verdict,
    *,
    passes: dict[str, int],
    skipped: int = 0,
    ignored_failures: int = 0,
    latest_result_at: str | None = None,
    settings: ScoringSettings,
    discounted: Sequence[dict[str, Any]] = (),
) -> Verdict:
    """The verdict after more results that add no evidence, without the history.

    ``passes`` counts the new passing results per job. Only valid when
    ``verdict.pending`` is false and the new results are passes, skips or
    failures ignored as outage casualties (``quiet_tally``), none on a commit
    the test failed on. ``discounted`` are the notes of those ignored failures
    (``QuietTally.discounted``): the evidence keeps them as a full rescore would.
    """
    assert not verdict.pending
    recency = verdict.components.get("recency") or {}
    flaky_jobs = recency.get("jobs") or []
    # Only passes in the jobs the test flaked in wear its score down.
    counted = sum(count for job, count in passes.items() if job in flaky_jobs)
    clean_since = verdict.clean_since + counted
    judged = int(recency.get("judged", 0)) + counted
    half_life = verdict.half_life
    if verdict.evidence_weight > 0:
        half_life = half_life_of(settings, judged, int(recency.get("event_points", 1)))
    score = decayed(verdict.evidence_weight, clean_since, half_life)
    results = verdict.results + sum(passes.values()) + skipped + ignored_failures
    status = verdict.status
    # Only the statuses a score decides: a failing verdict is always pending,
    # so it is never advanced, and quarantined is never a verdict.
    if status in (TestStatus.FLAKY, TestStatus.NEW, TestStatus.STABLE):
        status = status_without_streak(score, results, settings)
    components = dict(verdict.components)
    components["recency"] = recency_components(
        clean_since, half_life, verdict.evidence_weight, flaky_jobs, judged,
        int(recency.get("event_points", 0)),
    )  # fmt: skip
    if ignored_failures:
        components["outage_failures"] = components.get("outage_failures", 0) + ignored_failures
    evidence = verdict.evidence
    if discounted:
        events = [e for e in evidence if e.get("kind") != "incident"][::-1]
        notes = sorted(
            [*(e for e in evidence if e.get("kind") == "incident"), *discounted], key=note_order
        )
        evidence = evidence_list(events, notes)
        components["incidents"] = int(components.get("incidents", 0)) + len(discounted)
    if skipped:
        components["skipped"] = int(verdict.components.get("skipped", 0)) + skipped
    return Verdict(
        status=status,
        score=round(score, 6),
        results=results,
        failures=verdict.failures + ignored_failures,
        evidence_weight=verdict.evidence_weight,
        half_life=half_life,
        clean_since=clean_since,
        pending=False,
        flaky_since=verdict.flaky_since if status == TestStatus.FLAKY else None,
        last_failure_at=verdict.last_failure_at,
        latest_result_at=latest_result_at or verdict.latest_result_at,
        components=components,
        evidence=evidence,
    )


def is_at_rest(verdict: Verdict) -> bool:
    """Whether passes alone leave this verdict as it is, but for its count of results and recency.

    A stable test with no evidence, nothing pending and no branch waiting on
    it: ``advance_clean`` with passes only changes its ``results`` and
    ``latest_result_at`` (and adds a ``recency`` component with nothing in it
    where there is none, as a full rescore leaves it out), so a run in which
    it only passed need not be written into its score (``analysis.tallies``).
    """
    return (
        verdict.status == TestStatus.STABLE
        and verdict.score == 0
        and verdict.evidence_weight == 0
        and not verdict.pending
        and not verdict.components.get("pending_branches")
    )


def quiet_verdict(
    *,
    results: int,
    failures: int,
    skipped: int,
    latest_result_at: str | None,
    settings: ScoringSettings,
    discounted: Sequence[dict[str, Any]] = (),
) -> Verdict:
    """The verdict of a test with no evidence: never failed, or only as an outage casualty.

    ``discounted``: the notes of those failures (``QuietTally.discounted``).
    """
    components: dict[str, Any] = {
        "outage_failures": failures,
        "skipped": skipped,
        "incidents": len(discounted),
    }
    return Verdict(
        status=TestStatus.NEW if results < settings.min_results else TestStatus.STABLE,
        score=0.0,
        results=results,
        failures=failures,
        half_life=float(settings.min_half_life),
        latest_result_at=latest_result_at,
        components=components,
        evidence=evidence_list((), sorted(discounted, key=note_order)),
    )
