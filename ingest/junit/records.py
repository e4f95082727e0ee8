"""What the JUnit parser hands out: one ``TestCaseRecord`` per testcase and per-file counts.

Plain data with no behaviour: the ``Outcome`` of a testcase, the record the parse
loop builds for every ``<testcase>`` (positionally, on the hot path, so its field
order is part of the contract with ``ingest.junit.parse``), and the
``FileSummary`` that ``summarize`` fills by the MANIFEST definitions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    """A test result's outcome, the one vocabulary of parser, database, scoring and SQL."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


# The outcomes that count as a failure wherever results are judged.
FAILED_OUTCOMES = frozenset({Outcome.FAILED, Outcome.ERROR})


@dataclass(slots=True)
class TestCaseRecord:
    """One <testcase>. The parser builds these positionally (it is the hot path):
    keep the field order in step with ``_parse`` in ``ingest.junit.parse``."""

    __test__ = False  # not a pytest test class, despite the name

    suite: str
    classname: str
    name: str
    file: str
    line: int | None
    time: float | None
    outcome: Outcome
    has_failure: bool
    has_error: bool
    has_skipped: bool
    message: str
    failure_type: str
    stack: str
    flaky_reruns: int
    rerun_failures: int
    label: str


@dataclass(slots=True)
class FileSummary:
    tests: int = 0
    passed: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    flaky_reruns: int = 0
    rerun_failures: int = 0
