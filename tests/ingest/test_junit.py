"""Golden tests of ingest.junit against this project's own JUnit fixtures.

tests/ingest/fixtures/junit/ holds small hand-written reports, one per dialect the
parser meets (pytest, Surefire, cargo-nextest, jest, go-junit-report, gotestsum,
PHPUnit, .NET, mocha, Bazel, UTF-16, ISO-8859-1, a bare <testsuite> root, an empty
suite, a truncated file). Beside each, NAME.expected.json gives the counts (by the
definitions ``make conformance`` applies to the corpus of real reports from public
projects, which this suite never reads) and every record a correct reader produces,
or {"error": true}; ``python -m tests.ingest.golden --write`` regenerates them, for
review by eye. The focused tests below pin the record fields the rest of the
pipeline relies on: outcome priority, messages, labels, times and encodings.
"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

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
from tests.ingest import golden

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = golden.fixture_paths()
# The dialects the fixtures must keep covering (a golden test per file below).
DIALECTS = {
    "pytest", "surefire", "nextest", "jest", "go-junit-report", "gotestsum", "phpunit",
    "dotnet", "mocha", "bazel", "utf16", "latin1", "no-testsuites-root", "empty-suite",
    "truncated", "eclipse-testrun",
}  # fmt: skip


def _records(xml: str | bytes, **kwargs: Any) -> list[TestCaseRecord]:
    data = xml.encode() if isinstance(xml, str) else xml
    return list(iter_test_cases(io.BytesIO(data), **kwargs))


def _one(xml: str, **kwargs: Any) -> TestCaseRecord:
    (record,) = _records(xml, **kwargs)
    return record


def _fixture(name: str) -> bytes:
    return (golden.FIXTURES / name).read_bytes()


def _golden_records(expected: dict[str, Any]) -> list[TestCaseRecord]:
    return [
        TestCaseRecord(**{**record, "outcome": Outcome(record["outcome"])})
        for record in expected["records"]
    ]


class _Trickle(io.RawIOBase):
    """A stream that hands out at most 7 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 7) if size and size > 0 else 7)


# ---------------------------------------------------------------------------
# Golden: every fixture against its NAME.expected.json.
# ---------------------------------------------------------------------------


def test_every_dialect_has_a_fixture_and_every_fixture_a_golden() -> None:
    names = {path.stem for path in FIXTURES}
    goldens = {
        path.name.removesuffix(golden.GOLDEN_SUFFIX)
        for path in golden.FIXTURES.glob(f"*{golden.GOLDEN_SUFFIX}")
    }
    assert names >= DIALECTS
    assert names == goldens, "run `python -m tests.ingest.golden --write` and review the diff"


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda path: path.name)
def test_counts_match_golden(fixture: Path) -> None:
    expected = golden.load(fixture)
    data = fixture.read_bytes()
    if expected.get("error"):
        assert expected == {"error": True}
        with pytest.raises(JUnitError):
            summarize(io.BytesIO(data))
        return

    counts = expected["counts"]
    summary = summarize(io.BytesIO(data))
    assert dataclasses.asdict(summary) == {
        field.name: counts[field.name] for field in dataclasses.fields(FileSummary)
    }
    assert golden.counts_of(iter_test_cases(io.BytesIO(data))) == counts
    # The golden agrees with itself: its counts are those of its records.
    assert golden.counts_of(_golden_records(expected)) == counts


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda path: path.name)
def test_records_match_golden(fixture: Path) -> None:
    expected = golden.load(fixture)
    data = fixture.read_bytes()
    if expected.get("error"):
        with pytest.raises(JUnitError):
            list(iter_test_cases(io.BytesIO(data)))
        return
    records = [golden.record_to_json(r) for r in iter_test_cases(io.BytesIO(data))]
    assert records == expected["records"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda path: path.name)
def test_chunk_boundaries_do_not_change_records(fixture: Path) -> None:
    """A stream that hands out 7 bytes per read gives the same records as a whole read."""
    expected = golden.load(fixture)
    data = fixture.read_bytes()
    if expected.get("error"):
        with pytest.raises(JUnitError):
            list(iter_test_cases(_Trickle(data)))
        return
    trickled = list(iter_test_cases(_Trickle(data)))
    assert trickled == list(iter_test_cases(io.BytesIO(data)))
    assert [golden.record_to_json(r) for r in trickled] == expected["records"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda path: path.name)
def test_golden_counts_agree_with_an_independent_count(fixture: Path) -> None:
    """expat (xml.etree) counts the same testcases: the goldens are not just our output."""
    expected = golden.load(fixture)
    try:
        root = ElementTree.fromstring(fixture.read_bytes())
    except ElementTree.ParseError:
        assert expected == {"error": True}
        return
    assert "error" not in expected

    def local(elem: ElementTree.Element) -> str:
        return elem.tag.rsplit("}", 1)[-1]

    cases = [e for e in root.iter() if local(e) == "testcase"]
    children = [[local(child) for child in case] for case in cases]
    # Eclipse's export marks a test it did not run with an attribute, not a child.
    ignored = [local(root) == "testrun" and case.get("ignored") == "true" for case in cases]
    independent = {
        "tests": len(cases),
        "failures": sum("failure" in tags for tags in children),
        "errors": sum("error" in tags for tags in children),
        "skipped": sum(
            "skipped" in tags or out for tags, out in zip(children, ignored, strict=True)
        ),
        "flaky_reruns": sum(
            tags.count("flakyFailure") + tags.count("flakyError") for tags in children
        ),
        "rerun_failures": sum(
            tags.count("rerunFailure") + tags.count("rerunError") for tags in children
        ),
    }
    assert independent == {key: expected["counts"][key] for key in independent}


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


def test_testrun_root_counts_every_testcase_once_however_suites_nest() -> None:
    records = _records(
        """<testrun name="all">
             <testcase classname="top" name="loose"/>
             <testsuite name="outer">
               <testcase classname="outer" name="a"/>
               <testsuite name="inner">
                 <testcase classname="inner" name="b"><failure>boom</failure></testcase>
                 <testsuite name="innermost"><testcase classname="deep" name="c"/></testsuite>
               </testsuite>
               <testcase classname="outer" name="d" ignored="true"/>
             </testsuite>
             <testsuite name="second"><testcase classname="second" name="e"/></testsuite>
           </testrun>"""
    )

    assert [(r.suite, r.name, r.outcome) for r in records] == [
        ("", "loose", Outcome.PASSED),
        ("outer", "a", Outcome.PASSED),
        ("inner", "b", Outcome.FAILED),
        ("innermost", "c", Outcome.PASSED),
        ("outer", "d", Outcome.SKIPPED),
        ("second", "e", Outcome.PASSED),
    ]
    assert records[2].message == "boom"


def test_ignored_attribute_skips_only_in_an_eclipse_testrun() -> None:
    # Elsewhere the corpus definitions count <skipped> children only.
    case = '<testcase name="t" ignored="true"/>'
    assert _one(f"<testsuite>{case}</testsuite>").outcome is Outcome.PASSED
    assert _one(f"<testrun>{case}</testrun>").outcome is Outcome.SKIPPED
    assert _one(f"<testrun><testsuite>{case}</testsuite></testrun>").has_skipped


def test_namespaced_testrun_is_read() -> None:
    record = _one('<r:testrun xmlns:r="urn:x"><r:testsuite name="s"><r:testcase name="t"/>'
                  "</r:testsuite></r:testrun>")  # fmt: skip
    assert (record.suite, record.name) == ("s", "t")


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
    original = _fixture("pytest.xml")
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
    data = _fixture("surefire.xml")
    records = {r.name: r for r in iter_test_cases(io.BytesIO(data))}
    flaky = records["testFlaky"]
    assert flaky.outcome is Outcome.PASSED
    assert (flaky.flaky_reruns, flaky.rerun_failures) == (4, 0)  # three flakyFailure, a flakyError
    assert not (flaky.has_failure or flaky.has_error)
    assert flaky.message == flaky.stack == flaky.failure_type == ""
    failing, broken = records["testAlwaysFails"], records["testBrokenFixture"]
    assert (failing.outcome, failing.flaky_reruns, failing.rerun_failures) == (Outcome.FAILED, 0, 2)
    assert (broken.outcome, broken.flaky_reruns, broken.rerun_failures) == (Outcome.ERROR, 0, 1)


def test_nextest_reruns_are_counted_per_testcase() -> None:
    data = _fixture("nextest.xml")
    records = {r.name: r for r in iter_test_cases(io.BytesIO(data))}
    failing = records["parse::rejects_truncated_header"]
    assert (failing.outcome, failing.rerun_failures, failing.flaky_reruns) == (
        Outcome.FAILED,
        2,
        0,
    )
    assert failing.message.startswith("thread 'parse::rejects_truncated_header' panicked")
    assert failing.failure_type == "test failure"
    assert records["net::retries_until_ready"].outcome is Outcome.PASSED
    assert records["net::retries_until_ready"].flaky_reruns == 3


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
