"""Stores verdicts as ``TestScore`` rows and reads them back as verdicts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from analysis.database import upsert_scores
from analysis.events import note_changes
from analysis.models import TestScore
from analysis.scoring import TestStatus, Verdict
from ingest.timestamps import parse_timestamp


def save_verdicts(repository_id: int, verdicts: Iterable[tuple[int, Verdict]]) -> int:
    """Insert or replace the scores of these tests; returns how many.

    Tests that became flaky or were fixed are announced, and the repository's
    quarantine policy applied (``analysis.events``), in the same transaction.
    """
    verdicts = list(verdicts)
    # Flaky tests are few: reading which of these were flaky costs one small query.
    was_flaky = set(
        TestScore.objects.filter(
            test_id__in=[pk for pk, _ in verdicts], verdict=TestStatus.FLAKY
        ).values_list("test_id", flat=True)
    )
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
        )
        for test_pk, verdict in verdicts
    ]
    for start in range(0, len(rows), 5000):
        upsert_scores(rows[start : start + 5000])
    note_changes(repository_id, verdicts, dict.fromkeys(was_flaky, TestStatus.FLAKY.value))
    return len(rows)


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
