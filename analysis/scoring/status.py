"""The one vocabulary of test statuses, shared by scoring, the stored scores, the reports, the API and the check runs.

Scoring concludes ``flaky``, ``failing``, ``stable`` or ``new``; ``quarantined``
is never a verdict but a person's decision (``analysis.models.Quarantine``)
that reports show in the verdict's place. The values are what the database
stores in ``TestScore.verdict`` and what the API's ``?status=`` takes, so they
never change.
"""

from __future__ import annotations

import enum


class TestStatus(enum.StrEnum):
    """A test's status; members compare equal to their strings ("flaky" == TestStatus.FLAKY)."""

    __test__ = False  # not a pytest test class, despite the name

    FLAKY = "flaky"
    FAILING = "failing"
    STABLE = "stable"
    NEW = "new"
    QUARANTINED = "quarantined"
