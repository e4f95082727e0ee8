"""Stores verdicts as ``TestScore`` rows and reads them back as verdicts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from analysis.database import upsert_scores
from analysis.events import note_changes
from analysis.models import TestScore
from analysis.scoring import TestStatus, Verdict, is_at_rest
from analysis.tallies import current_mark
from ingest.timestamps import parse_timestamp

# The component saying a verdict counts results that retention has since removed
# (``analysis.retention``): set on the scores of the tests whose results go,
# kept by the updates that advance a score without reading its history, and
# gone after a full look at the history left.
HISTORY_PRUNED = "history_pruned"


def save_verdicts(repository_id: int, verdicts: Iterable[tuple[int, Verdict]]) -> int:
    """Insert or replace the scores of these tests; returns how many.

    Tests that became flaky or were fixed are announced, and the repository's
    quarantine policy applied (``analysis.events``), in the same transaction.
    A flaky test whose stretch began in removed history keeps its
    ``flaky_since`` (``carry_flaky_since``).
    """
    verdicts = list(verdicts)
    # Flaky tests are few: reading which of these were flaky costs one small query.
    stored_flaky = {
        test_pk: (flaky_since, bool(pruned))
        for test_pk, flaky_since, pruned in TestScore.objects.filter(
            test_id__in=[pk for pk, _ in verdicts], verdict=TestStatus.FLAKY
        ).values_list("test_id", "flaky_since", "components__history_pruned")
    }
    verdicts = [
        (test_pk, carry_flaky_since(verdict, stored_flaky.get(test_pk)))
        for test_pk, verdict in verdicts
    ]
    was_flaky = set(stored_flaky)
    # Each verdict counts every tally recorded so far (the caller holds the
    # analysis lock, and settled or read the history of these tests).
    mark = current_mark(repository_id)
    rows = [
        (
            test_pk,
            repository_id,
            verdict.status,
            verdict.score,
            verdict.results,
            verdict.failures,
            verdict.evidence_weight,
            verdict.half_life,
            verdict.clean_since,
            verdict.pending,
            _when(verdict.latest_result_at),
            _when(verdict.flaky_since),
            _when(verdict.last_failure_at),
            verdict.components,
            verdict.evidence,
            is_at_rest(verdict),
            mark,
        )
        for test_pk, verdict in verdicts
    ]
    for start in range(0, len(rows), 5000):
        upsert_scores(rows[start : start + 5000])
    note_changes(repository_id, verdicts, dict.fromkeys(was_flaky, TestStatus.FLAKY.value))
    return len(rows)


def carry_flaky_since(verdict: Verdict, stored: tuple[datetime | None, bool] | None) -> Verdict:
    """The verdict, with the stored ``flaky_since`` kept when removed results alone moved it.

    ``stored`` is the test's stored flaky verdict: (its flaky_since, whether it
    counts results retention has removed, ``components["history_pruned"]``).
    Once the start of a flaky stretch is removed, a rescore of what is left
    dates the stretch from the oldest evidence still stored, a day later with
    every day retention removes; a test that stays flaky keeps the date it
    was first classified flaky instead, and the verdict keeps saying it rests
    on removed history, so the next rescore keeps it too.
    """
    if stored is None or not verdict.is_flaky:
        return verdict
    since, pruned = stored
    if not pruned or since is None:
        return verdict
    rescored = parse_timestamp(verdict.flaky_since)
    if rescored is not None and rescored <= since:
        return verdict
    return replace(
        verdict,
        flaky_since=since.isoformat(),
        components={**verdict.components, HISTORY_PRUNED: True},
    )


def verdict_of(score: TestScore) -> Verdict:
    return Verdict(
        status=score.verdict,
        score=score.score,
        results=score.results,
        failures=score.failures,
        evidence_weight=score.evidence_weight,
        half_life=score.half_life,
        clean_since=score.clean_since,
        pending=score.pending,
        flaky_since=_iso(score.flaky_since),
        last_failure_at=_iso(score.last_failure_at),
        latest_result_at=_iso(score.latest_result_at),
        components=score.components,
        evidence=score.evidence,
    )


def _when(value: str | None) -> datetime | None:
    return parse_timestamp(value)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
