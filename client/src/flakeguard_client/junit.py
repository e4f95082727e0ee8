"""Which tests failed in a JUnit XML report (or a ZIP of them), read as a stream.

expat is driven directly, with no tree built and no text kept, so memory stays
flat however large the report's captured output is. Reports come from the
build's own test runner, but a build runs code from pull requests: a document
type declaration (the way to entity expansion and external entities) is
refused outright, as no test runner writes one.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.parsers import expat

from flakeguard_client.keys import display_name, test_key

MAX_REPORT_BYTES = 512 * 1024 * 1024
READ_SIZE = 1024 * 1024
SUITE_TAGS = ("testsuites", "testsuite")
# Surefire's flakyFailure/flakyError mean the test passed on a rerun;
# rerunFailure/rerunError accompany a <failure>/<error>, which is what counts.
FAILURE_TAGS = ("failure", "error")


class ReportError(Exception):
    """The file is not a JUnit report this client can read safely."""


@dataclass(frozen=True)
class FailedTest:
    classname: str
    file: str
    name: str

    @property
    def key(self) -> str:
        return test_key(self.classname, self.file, self.name)

    @property
    def display(self) -> str:
        return display_name(self.classname, self.file, self.name)


@dataclass
class Report:
    label: str
    tests: int = 0
    failed: list[FailedTest] = field(default_factory=list)
    # Reasons the failed list may be incomplete, e.g. a suite declares more
    # failures than it lists; such a report cannot justify forgiving a build.
    problems: list[str] = field(default_factory=list)


@dataclass
class _Suite:
    declared: int | None
    found: int = 0


def _declared(attrs: dict[str, str]) -> int | None:
    if "failures" not in attrs and "errors" not in attrs:
        return None
    try:
        return int(attrs.get("failures") or 0) + int(attrs.get("errors") or 0)
    except ValueError:
        return None


class _Reader:
    def __init__(self, label: str) -> None:
        self.report = Report(label)
        self.depth = 0
        self.suites: list[_Suite] = []
        self.case: dict[str, str] | None = None
        self.case_depth = 0
        self.case_failures = 0

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1 and tag not in SUITE_TAGS:
            raise ReportError(
                f"{self.report.label}: not a JUnit report (its root element is <{tag}>, "
                "not <testsuites> or <testsuite>)"
            )
        if self.case is not None:
            if self.depth == self.case_depth + 1 and tag in FAILURE_TAGS:
                self.case_failures += 1
            return
        if tag in SUITE_TAGS:
            self.suites.append(_Suite(_declared(attrs)))
        elif tag == "testcase":
            self.case, self.case_depth, self.case_failures = attrs, self.depth, 0

    def end(self, tag: str) -> None:
        if self.case is not None and self.depth == self.case_depth:
            self.report.tests += 1
            if self.case_failures:
                self.report.failed.append(
                    FailedTest(
                        self.case.get("classname", ""),
                        self.case.get("file", ""),
                        self.case.get("name", ""),
                    )
                )
                for suite in self.suites:
                    suite.found += self.case_failures
            self.case = None
        elif self.case is None and tag in SUITE_TAGS and self.suites:
            suite = self.suites.pop()
            if suite.declared is not None and suite.declared > suite.found:
                self.report.problems.append(
                    f"{self.report.label}: a <{tag}> declares {suite.declared} failures and "
                    f"errors but lists {suite.found}"
                )
        self.depth -= 1


def _refuse(what: str, label: str) -> Callable[..., Any]:
    def handler(*_: object) -> Any:
        raise ReportError(f"{label}: refused: the report contains {what}")

    return handler


def read_stream(stream: IO[bytes], label: str, limit: int = MAX_REPORT_BYTES) -> Report:
    """Parse one XML report from a binary stream of at most ``limit`` bytes."""
    reader = _Reader(label)
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse("a <!DOCTYPE> declaration", label)
    parser.EntityDeclHandler = _refuse("an <!ENTITY> declaration", label)
    parser.UnparsedEntityDeclHandler = _refuse("an <!ENTITY> declaration", label)
    parser.ExternalEntityRefHandler = _refuse("an external entity", label)
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    size = 0
    try:
        while chunk := stream.read(READ_SIZE):
            size += len(chunk)
            if size > limit:
                raise ReportError(f"{label}: larger than {limit // (1024 * 1024)} MiB")
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise ReportError(f"{label}: not well-formed XML: {exc}") from None
    return reader.report


def read_reports(path: Path, limit: int = MAX_REPORT_BYTES) -> list[Report]:
    """The reports in an .xml file (one) or a .zip archive (each .xml member)."""
    label = str(path)
    try:
        if path.suffix.lower() != ".zip":
            if path.stat().st_size > limit:
                raise ReportError(f"{label}: larger than {limit // (1024 * 1024)} MiB")
            with open(path, "rb") as f:
                return [read_stream(f, label, limit)]
        return _read_zip(path, limit)
    except OSError as exc:
        raise ReportError(f"{label}: cannot read: {exc.strerror or exc}") from None


def _read_zip(path: Path, limit: int) -> list[Report]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [
                info
                for info in archive.infolist()
                if not info.is_dir()
                and info.filename.lower().endswith(".xml")
                and not info.filename.startswith("__MACOSX/")
            ]
            if not members:
                raise ReportError(f"{path}: the archive contains no .xml report")
            reports = []
            for info in members:
                label = f"{path}:{info.filename}"
                if info.file_size > limit:
                    raise ReportError(f"{label}: larger than {limit // (1024 * 1024)} MiB")
                with archive.open(info) as member:
                    reports.append(read_stream(member, label, limit))
            return reports
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError) as exc:
        raise ReportError(f"{path}: not a readable ZIP archive: {exc}") from None
