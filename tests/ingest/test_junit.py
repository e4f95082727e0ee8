"""Golden tests of ingest.junit against every report of the shared JUnit corpus.

MANIFEST.json in the corpus is the golden file: for each report it gives the
testcase counts that any correct reader must produce (or null when the file is
not well-formed). The focused tests below pin the record fields the rest of the
pipeline relies on: outcome priority, messages, labels, times and encodings.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from ingest.junit import (
    LABEL_PROPERTY_NAMES,
    FileSummary,
    JUnitError,
    Outcome,
    TestCaseRecord,
    iter_test_cases,
    summarize,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _corpus_dir() -> Path:
    # The repository is cloned beside shared/ (locally and in CI alike).
    override = os.environ.get("FLAKEGUARD_JUNIT_CORPUS")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "junit-corpus"


CORPUS = _corpus_dir()
MISSING_CORPUS = (
    f"JUnit corpus not found: {CORPUS / 'MANIFEST.json'} does not exist. Put a copy of "
    "shared/junit-corpus beside the repository or set FLAKEGUARD_JUNIT_CORPUS."
)


def _manifest_entries() -> list[Any]:
    manifest = CORPUS / "MANIFEST.json"
    if not manifest.is_file():
        # A missing corpus must fail the run, never skip it silently.
        return [pytest.param(None, id="corpus-missing")]
    files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    return [pytest.param(entry, id=entry["path"]) for entry in files]


def _counts(records: Iterable[TestCaseRecord], *, surefire: bool) -> dict[str, int]:
    records = list(records)
    counts = {
        "tests": len(records),
        "failures": sum(r.has_failure for r in records),
        "errors": sum(r.has_error for r in records),
        "skipped": sum(r.has_skipped for r in records),
    }
    if surefire:
        counts["flaky_reruns"] = sum(r.flaky_reruns for r in records)
        counts["rerun_failures"] = sum(r.rerun_failures for r in records)
        counts["flaky_tests"] = sum(
            1 for r in records if r.flaky_reruns and not (r.has_failure or r.has_error)
        )
    return counts


def _records(xml: str | bytes, **kwargs: Any) -> list[TestCaseRecord]:
    data = xml.encode() if isinstance(xml, str) else xml
    return list(iter_test_cases(io.BytesIO(data), **kwargs))


def _one(xml: str, **kwargs: Any) -> TestCaseRecord:
    (record,) = _records(xml, **kwargs)
    return record


def _corpus_file(relative: str) -> bytes:
    path = CORPUS / relative
    if not path.is_file():
        pytest.fail(MISSING_CORPUS)
    return path.read_bytes()


# ---------------------------------------------------------------------------
# Golden: every MANIFEST entry.
# ---------------------------------------------------------------------------


def test_corpus_is_present() -> None:
    assert (CORPUS / "MANIFEST.json").is_file(), MISSING_CORPUS


@pytest.mark.parametrize("entry", _manifest_entries())
def test_counts_match_manifest(entry: dict[str, Any] | None) -> None:
    if entry is None:
        pytest.fail(MISSING_CORPUS)
    data = _corpus_file(entry["path"])
    assert hashlib.sha256(data).hexdigest() == entry["sha256"], "corpus file changed on disk"
    expected = entry["expected"]

    if expected is None:
        with pytest.raises(JUnitError):
            summarize(io.BytesIO(data))
        return

    records = list(iter_test_cases(io.BytesIO(data)))
    assert _counts(records, surefire="flaky_reruns" in expected) == expected
    summary = summarize(io.BytesIO(data))
    assert summary == FileSummary(
        tests=expected["tests"],
        passed=sum(r.outcome is Outcome.PASSED for r in records),
        failures=expected["failures"],
        errors=expected["errors"],
        skipped=expected["skipped"],
        flaky_reruns=expected.get("flaky_reruns", summary.flaky_reruns),
        rerun_failures=expected.get("rerun_failures", summary.rerun_failures),
    )


@pytest.mark.parametrize("entry", _manifest_entries())
def test_chunk_boundaries_do_not_change_records(entry: dict[str, Any] | None) -> None:
    """A stream that hands out 7 bytes per read gives the same records as a whole read."""
    if entry is None:
        pytest.fail(MISSING_CORPUS)
    if entry["expected"] is None:
        return
    data = _corpus_file(entry["path"])

    class Trickle(io.RawIOBase):
        def __init__(self) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return self._data.read(min(size, 7) if size and size > 0 else 7)

    assert list(iter_test_cases(Trickle())) == list(iter_test_cases(io.BytesIO(data)))


# ---------------------------------------------------------------------------
# Outcomes, messages, stacks.
# ---------------------------------------------------------------------------


def test_outcome_priority_is_error_then_failure_then_skipped() -> None:
    records = _records(
        """<testsuite name="s">
          <testcase name="all"><skipped/><failure message="f"/><error message="e"/></testcase>
          <testcase name="fail_and_skip"><skipped/><failure message="f"/></testcase>
          <testcase name="skip"><skipped message="later"/></testcase>
          <testcase name="pass"><system-out>hello</system-out></testcase>
          <testcase name="empty"/>
        </testsuite>"""
    )
    outcomes = {r.name: r.outcome for r in records}
    assert outcomes == {
        "all": Outcome.ERROR,
        "fail_and_skip": Outcome.FAILED,
        "skip": Outcome.SKIPPED,
        "pass": Outcome.PASSED,
        "empty": Outcome.PASSED,
    }
    first = records[0]
    assert (first.has_failure, first.has_error, first.has_skipped) == (True, True, True)
    assert first.message == "e"  # the error wins, so its message is the one kept


def test_status_attribute_alone_does_not_skip() -> None:
    record = _one('<testsuite><testcase name="t" status="disabled"/></testsuite>')
    assert record.outcome is Outcome.PASSED
    assert record.has_skipped is False


def test_message_comes_from_attribute_then_text_and_stack_from_text() -> None:
    with_attr, without_attr = _records(
        """<testsuite>
          <testcase name="a"><failure message="boom" type="AssertionError">Traceback
            line 2</failure></testcase>
          <testcase name="b">
            <error><![CDATA[NullPointerException <at> Foo.java:3]]></error>
          </testcase>
        </testsuite>"""
    )
    assert with_attr.message == "boom"
    assert with_attr.failure_type == "AssertionError"
    assert with_attr.stack == "Traceback\n            line 2"
    assert without_attr.message == "NullPointerException <at> Foo.java:3"
    assert without_attr.stack == without_attr.message
    assert without_attr.failure_type == ""


def test_messages_and_stacks_are_truncated() -> None:
    record = _one(
        f'<testsuite><testcase name="t"><failure message="{"m" * 50}">{"s" * 50}</failure>'
        "</testcase></testsuite>",
        max_message_chars=10,
    )
    assert record.message == "m" * 10
    assert record.stack == "s" * 10


def test_skip_message_is_kept_without_stack() -> None:
    reasons = _records(
        """<testsuite>
          <testcase name="a"><skipped message="needs network"/></testcase>
          <testcase name="b"><skipped>conftest.py:3: no GPU</skipped></testcase>
        </testsuite>"""
    )
    assert [(r.message, r.stack, r.failure_type) for r in reasons] == [
        ("needs network", "", ""),
        ("conftest.py:3: no GPU", "", ""),
    ]


def test_passed_records_have_empty_message_fields() -> None:
    record = _one('<testsuite><testcase name="t" classname="c"/></testsuite>')
    assert (record.message, record.failure_type, record.stack) == ("", "", "")


def test_negative_message_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        iter_test_cases(io.BytesIO(b"<testsuite/>"), max_message_chars=-1)


# ---------------------------------------------------------------------------
# Attributes, suites, labels.
# ---------------------------------------------------------------------------


def test_missing_attributes_become_empty_or_none() -> None:
    record = _one("<testsuites><testsuite><testcase/></testsuite></testsuites>")
    assert (record.suite, record.classname, record.name, record.file) == ("", "", "", "")
    assert (record.line, record.time, record.label) == (None, None, "")


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("0.034", 0.034),
        ("1.4e-05", 1.4e-05),
        ("1,234.5", 1234.5),
        ("1,234", 1234.0),
        ("0,25", 0.25),
        ("1.234,5", 1234.5),
        (" 2 ", 2.0),
        ("", None),
        ("NaN", None),
        ("inf", None),
        ("-1", None),
        ("<<computed>>".replace("<", "&lt;").replace(">", "&gt;"), None),
        ("12s", None),
    ],
)
def test_time_is_read_leniently(raw: str, seconds: float | None) -> None:
    record = _one(f'<testsuite><testcase name="t" time="{raw}"/></testsuite>')
    assert record.time == seconds


@pytest.mark.parametrize(("raw", "line"), [("42", 42), ("", None), ("12a", None)])
def test_line_is_kept_only_when_an_integer(raw: str, line: int | None) -> None:
    record = _one(f'<testsuite><testcase name="t" file="a.py" line="{raw}"/></testsuite>')
    assert (record.file, record.line) == ("a.py", line)


def test_suite_is_the_innermost_enclosing_testsuite() -> None:
    records = _records(
        """<testsuites>
          <testsuite name="outer">
            <testsuite name="inner"><testcase name="a"/></testsuite>
            <testcase name="b"/>
          </testsuite>
          <testcase name="c"/>
        </testsuites>"""
    )
    assert [(r.name, r.suite) for r in records] == [("a", "inner"), ("b", "outer"), ("c", "")]


def test_duplicate_testcases_are_separate_records() -> None:
    records = _records(
        '<testsuite><testcase classname="c" name="t"/><testcase classname="c" name="t">'
        "<failure/></testcase></testsuite>"
    )
    assert [r.outcome for r in records] == [Outcome.PASSED, Outcome.FAILED]


def test_label_prefers_properties_in_listed_order() -> None:
    assert LABEL_PROPERTY_NAMES == ("ci.job", "job", "matrix", "configuration")
    record = _one(
        """<testsuite name="s" hostname="runner-7">
          <properties>
            <property name="matrix" value="py3.12"/>
            <property name="ci.job" value="test (ubuntu, 3.12)"/>
            <property name="java.version" value="17"/>
          </properties>
          <testcase name="t"/>
        </testsuite>"""
    )
    assert record.label == "test (ubuntu, 3.12)"


def test_label_property_may_hold_its_value_as_text() -> None:
    record = _one(
        '<testsuite><properties><property name="job"> nightly </property></properties>'
        '<testcase name="t"/></testsuite>'
    )
    assert record.label == "nightly"


@pytest.mark.parametrize(
    ("hostname", "label"),
    [("runner-7", "runner-7"), ("localhost", ""), ("hostname", ""), ("", ""), (None, "")],
)
def test_label_falls_back_to_a_meaningful_hostname(hostname: str | None, label: str) -> None:
    attribute = f' hostname="{hostname}"' if hostname is not None else ""
    record = _one(f'<testsuite name="s"{attribute}><testcase name="t"/></testsuite>')
    assert record.label == label


def test_nested_suites_inherit_the_closest_label() -> None:
    records = _records(
        """<testsuites>
          <testsuite name="outer">
            <properties><property name="configuration" value="release"/></properties>
            <testsuite name="a"><testcase name="t1"/></testsuite>
            <testsuite name="b">
              <properties><property name="job" value="debug-job"/></properties>
              <testcase name="t2"/>
            </testsuite>
            <testsuite name="c"><testcase name="t3"/></testsuite>
          </testsuite>
        </testsuites>"""
    )
    assert [(r.suite, r.label) for r in records] == [
        ("a", "release"),
        ("b", "debug-job"),
        ("c", "release"),
    ]


# ---------------------------------------------------------------------------
# Encodings, namespaces and partial reads.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_reports_read_like_utf8(codec: str) -> None:
    original = _corpus_file("pytest/enricomi__junit.fail.xml")
    text = original.decode("utf-8").replace('encoding="utf-8"', 'encoding="UTF-16"')
    assert 'encoding="UTF-16"' in text
    body = text.encode(codec)
    if codec != "utf-16":  # the plain codec writes a BOM itself
        body = "\ufeff".encode(codec) + body
    assert list(iter_test_cases(io.BytesIO(body))) == list(iter_test_cases(io.BytesIO(original)))


def test_character_references_and_non_ascii_survive() -> None:
    record = _one('<testsuite><testcase name="café &#x2713; &lt;x&gt;"/></testsuite>')
    assert record.name == "café ✓ <x>"


def test_latin1_declared_encoding_is_honoured() -> None:
    data = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><testsuite><testcase name="café"/></testsuite>'
    )
    (record,) = _records(data.encode("latin-1"))
    assert record.name == "café"


def test_namespaced_reports_are_read() -> None:
    record = _one(
        '<j:testsuites xmlns:j="urn:junit"><j:testsuite name="s"><j:testcase name="t">'
        '<j:failure message="m"/></j:testcase></j:testsuite></j:testsuites>'
    )
    assert (record.suite, record.outcome, record.message) == ("s", Outcome.FAILED, "m")


def test_records_before_a_truncation_are_yielded_then_the_error_raised() -> None:
    stream = io.BytesIO(
        b'<testsuite name="s"><testcase name="first"/><testcase name="second"><failure>bo'
    )
    records = iter_test_cases(stream)
    assert next(records).name == "first"
    with pytest.raises(JUnitError, match="truncated"):
        next(records)


# ---------------------------------------------------------------------------
# Surefire reruns.
# ---------------------------------------------------------------------------


def test_surefire_flaky_test_passes_with_its_reruns_counted() -> None:
    data = _corpus_file("surefire/surefire__TEST-org.acme.FlakyTest.xml")
    records = {r.name: r for r in iter_test_cases(io.BytesIO(data))}
    flaky = records["testFlaky"]
    assert flaky.outcome is Outcome.PASSED
    assert (flaky.flaky_reruns, flaky.rerun_failures) == (4, 0)
    assert not (flaky.has_failure or flaky.has_error)


def test_nextest_reruns_are_counted_per_testcase() -> None:
    data = _corpus_file("other/nextest__fixture-project-junit.xml")
    records = {r.name: r for r in iter_test_cases(io.BytesIO(data))}
    failing = records["test_failure_assert"]
    assert (failing.outcome, failing.rerun_failures, failing.flaky_reruns) == (
        Outcome.FAILED,
        2,
        0,
    )
    assert failing.message.startswith("thread 'test_failure_assert' panicked")
    assert failing.failure_type == "test failure"
    assert records["test_flaky_mod_4"].outcome is Outcome.PASSED
    assert records["test_flaky_mod_4"].flaky_reruns == 3


def test_surefire_rerun_elements_are_counted() -> None:
    record = _one(
        """<testsuite name="s"><testcase name="t">
          <failure message="still failing"/>
          <rerunFailure message="1"><stackTrace>x</stackTrace></rerunFailure>
          <rerunError message="2"/>
          <flakyError message="3"/>
        </testcase></testsuite>"""
    )
    assert (record.rerun_failures, record.flaky_reruns, record.message) == (2, 1, "still failing")


# ---------------------------------------------------------------------------
# Memory stays bounded on a large file (in a fresh process, so the peak is ours).
# ---------------------------------------------------------------------------

_LARGE_FILE_CHILD = textwrap.dedent(
    """
    import io, json, sys
    sys.path.insert(0, sys.argv[1])

    from tests.peak_memory import peak_kb
    from ingest.junit import iter_test_cases

    PROPS = "".join(f'<property name="p{i}" value="{"v" * 60}"/>' for i in range(30))
    OUT = "<system-out><![CDATA[" + "log line <with> brackets\\n" * 80 + "]]></system-out>"
    FAILURE = f'<failure message="m" type="E">{"at x.y(Z.java:1)" * 60}</failure>'
    FLAKY = f'<flakyFailure message="f"><stackTrace>st</stackTrace>{OUT}</flakyFailure>'

    def suites():
        yield b"<testsuites>"
        for s in range(10_000):  # about 85 MB in all
            cases = "".join(
                f'<testcase classname="pkg.C{s}" name="t{t}" time="0.01">'
                + (FAILURE if t == 0 else "")
                + (FLAKY if t == 1 else "")
                + "</testcase>"
                for t in range(8)
            )
            suite = f'<testsuite name="S{s}"><properties>{PROPS}</properties>{cases}{OUT}'
            yield (suite + "</testsuite>").encode()
        yield b"</testsuites>"

    class Stream(io.RawIOBase):
        def __init__(self):
            self.parts, self.buf, self.total = suites(), b"", 0
        def readable(self):
            return True
        def read(self, size=-1):
            while len(self.buf) < size:
                part = next(self.parts, None)
                if part is None:
                    break
                self.buf += part
            out, self.buf = self.buf[:size], self.buf[size:]
            self.total += len(out)
            return out

    before = peak_kb()
    stream = Stream()
    count = sum(1 for _ in iter_test_cases(stream))
    peak = peak_kb()
    print(json.dumps({"records": count, "bytes": stream.total, "grew_mb": (peak - before) / 1024}))
    """
)


@pytest.mark.timeout(120)
def test_memory_stays_flat_on_a_large_surefire_style_file() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _LARGE_FILE_CHILD, str(REPO_ROOT)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(result.stdout)
    assert figures["records"] == 10_000 * 8
    assert figures["bytes"] > 60 * 1024 * 1024
    # The tree is pruned every chunk: growth is a few MB, never the file size.
    assert figures["grew_mb"] < 30, figures
