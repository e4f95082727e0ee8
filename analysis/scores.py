"""Stores verdicts as ``TestScore`` rows and reads them back as verdicts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from analysis.models import TestScore
from analysis.scoring import Verdict

_UPDATED_FIELDS = [
    "repository",
    "verdict",
    "score",
    "results",
    "failures",
    "evidence_weight",
    "half_life",
    "clean_since",
    "pending",
    "latest_result_at",
    "flaky_since",
    "last_failure_at",
    "components",
    "evidence",
    "updated_at",
]


def save_verdicts(repository_id: int, verdicts: Iterable[tuple[int, Verdict]]) -> int:
    """Insert or replace the scores of these tests in set-based statements; returns how many."""
    rows = [
        TestScore(
            test_id=test_pk,
            repository_id=repository_id,
            verdict=verdict.status,
            score=verdict.score,
            results=verdict.results,
            failures=verdict.failures,
            evidence_weight=verdict.evidence_weight,
            half_life=verdict.half_life,
            clean_since=verdict.clean_since,
            pending=verdict.pending,
            latest_result_at=_when(verdict.latest_result_at),
            flaky_since=_when(verdict.flaky_since),
            last_failure_at=_when(verdict.last_failure_at),
            components=verdict.components,
            evidence=verdict.evidence,
        )
        for test_pk, verdict in verdicts
    ]
    TestScore.objects.bulk_create(
        rows,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["test"],
        update_fields=_UPDATED_FIELDS,
    )
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
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
