"""Pure flakiness scoring: one test's results in, its verdict out. No Django in here.

``signals`` finds the evidence in a history, ``incidents`` the job attempts
whose failures are put down to infrastructure, ``maths`` turns evidence into a score,
``verdict`` classifies the test, ``incremental`` keeps a verdict up to date from
results that add no evidence, ``explain`` puts evidence into words, and
``status`` holds the one vocabulary of test statuses. Import from here.
"""

from analysis.scoring.explain import describe_event
from analysis.scoring.history import HistoryContext, JobLoad, ResultRow, RunMeta
from analysis.scoring.incidents import Incident, incident_at, list_incidents
from analysis.scoring.incremental import (
    QuietTally,
    ResultGroup,
    advance_clean,
    is_at_rest,
    quiet_tally,
    quiet_verdict,
)
from analysis.scoring.settings import ScoringSettings
from analysis.scoring.signals import failure_discount, is_outage_casualty
from analysis.scoring.status import TestStatus
from analysis.scoring.verdict import Verdict, score_test

__all__ = [
    "HistoryContext",
    "Incident",
    "JobLoad",
    "QuietTally",
    "ResultGroup",
    "ResultRow",
    "RunMeta",
    "ScoringSettings",
    "TestStatus",
    "Verdict",
    "advance_clean",
    "describe_event",
    "failure_discount",
    "incident_at",
    "is_at_rest",
    "is_outage_casualty",
    "list_incidents",
    "quiet_tally",
    "quiet_verdict",
    "score_test",
]
