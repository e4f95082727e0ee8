"""Streaming, hardened reader of JUnit XML reports: pure Python, no Django.

This package turns one JUnit/xUnit report (pytest, Surefire, jest, mocha, go, .NET,
Bazel, PHPUnit and friends, under a ``<testsuites>``, ``<testsuite>`` or Eclipse's
``<testrun>`` root) into a stream of ``TestCaseRecord``s, one per ``<testcase>``
wherever it sits, and into per-file counts. It is responsible for
refusing anything that is not a readable JUnit report with a ``JUnitError`` whose
message a user can act on; for never loading a DTD, entity, XInclude or anything
else from the file system or network (every DOCTYPE is refused before libxml2
reads its internal subset); and for keeping memory bounded whatever the file
size: lxml holds the open ``<testcase>`` plus at most one 64 KiB read's worth of
tree, because everything already reported is unlinked after each read, and
hostile floods of elements or text are refused once they pass fixed budgets.
Import from here; the modules inside are the package's own business.
"""

from ingest.junit.errors import JUnitError
from ingest.junit.parse import iter_test_cases, summarize
from ingest.junit.records import FAILED_OUTCOMES, FileSummary, Outcome, TestCaseRecord
from ingest.junit.suites import LABEL_PROPERTY_NAMES

__all__ = [
    "FAILED_OUTCOMES",
    "LABEL_PROPERTY_NAMES",
    "FileSummary",
    "JUnitError",
    "Outcome",
    "TestCaseRecord",
    "iter_test_cases",
    "summarize",
]
