"""Pure flakiness scoring: one test's results in, its verdict out. No Django in here."""

from analysis.scoring.history import HistoryContext, JobLoad, ResultRow, RunMeta
from analysis.scoring.settings import ScoringSettings
from analysis.scoring.verdict import (
    FAILING,
    FLAKY,
    NEW,
    STABLE,
    Verdict,
    advance_clean,
    describe_event,
    failure_discount,
    is_outage_casualty,
    quiet_verdict,
    score_test,
)

__all__ = [
    "FAILING",
    "FLAKY",
    "NEW",
    "STABLE",
    "HistoryContext",
    "JobLoad",
    "ResultRow",
    "RunMeta",
    "ScoringSettings",
    "Verdict",
    "advance_clean",
    "describe_event",
    "failure_discount",
    "is_outage_casualty",
    "quiet_verdict",
    "score_test",
]
