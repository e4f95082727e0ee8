import io
import zipfile
from pathlib import Path

import pytest
from reports import junit

from flakeguard_client.junit import FailedTest, ReportError, read_reports, read_stream


def read(xml: str, limit: int = 1 << 20) -> list[FailedTest]:
    report = read_stream(io.BytesIO(xml.encode()), "r.xml", limit)
    assert report.problems == []
    return report.failed


def test_failures_and_errors_count_skips_and_passes_do_not() -> None:
    xml = junit(
        ("t.a", "test_pass", "pass"),
        ("t.a", "test_fail", "failure"),
        ("t.a", "test_error", "error"),
        ("t.a", "test_skip", "skipped"),
    )
    report = read_stream(io.BytesIO(xml.encode()), "r.xml")
    assert report.tests == 4
    assert [t.name for t in report.failed] == ["test_fail", "test_error"]


def test_surefire_flaky_is_a_pass_and_rerun_failure_is_a_failure() -> None:
    xml = junit(("com.acme.CartTest", "flaky", "flaky"), ("com.acme.CartTest", "broken", "rerun"))
    assert [t.name for t in read(xml)] == ["broken"]


def test_bare_testsuite_and_nested_suites() -> None:
    bare = (
        '<testsuite failures="1"><testcase classname="c" name="n"><failure/></testcase></testsuite>'
    )
    assert read(bare) == [FailedTest("c", "", "n")]
    nested = (
        '<testsuites failures="2"><testsuite failures="2"><testsuite failures="1">'
        '<testcase classname="x" name="a" file="x.py"><failure/></testcase></testsuite>'
        '<testcase name="b" file="src\\y.spec.js"><error/></testcase>'
        "</testsuite></testsuites>"
    )
    assert read(nested) == [FailedTest("x", "x.py", "a"), FailedTest("", "src\\y.spec.js", "b")]


def test_only_direct_children_of_a_testcase_count() -> None:
    xml = (
        '<testsuite><testcase classname="c" name="n"><system-out>&lt;failure/&gt;</system-out>'
        "<properties><property name='error' value='x'/></properties></testcase></testsuite>"
    )
    assert read(xml) == []


def test_a_suite_declaring_more_failures_than_it_lists_is_a_problem() -> None:
    xml = '<testsuite failures="2" errors="1"><testcase classname="c" name="n"><failure/></testcase></testsuite>'
    report = read_stream(io.BytesIO(xml.encode()), "r.xml")
    assert report.problems == ["r.xml: a <testsuite> declares 3 failures and errors but lists 1"]


def test_a_test_failing_and_erroring_in_teardown_matches_its_declared_counts() -> None:
    xml = (
        '<testsuite failures="1" errors="1"><testcase classname="c" name="n">'
        "<failure/><error/></testcase></testsuite>"
    )
    assert read(xml) == [FailedTest("c", "", "n")]


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite/>',
            "refused: the report contains a <!DOCTYPE> declaration",
        ),
        (
            '<!DOCTYPE testsuite SYSTEM "http://example.invalid/x.dtd"><testsuite/>',
            "refused: the report contains a <!DOCTYPE> declaration",
        ),
        ("<testsuite><testcase name='a'>", "not well-formed XML: no element found"),
        ("", "not well-formed XML"),
        ("<html><body/></html>", "not a JUnit report (its root element is <html>"),
    ],
)
def test_refused_reports(xml: str, message: str) -> None:
    with pytest.raises(ReportError) as info:
        read_stream(io.BytesIO(xml.encode()), "r.xml")
    assert message in str(info.value)
    assert str(info.value).startswith("r.xml: ")


def test_size_is_capped_while_streaming() -> None:
    xml = "<testsuite>" + "<testcase name='a'/>" * 1000 + "</testsuite>"
    with pytest.raises(ReportError, match="larger than"):
        read_stream(io.BytesIO(xml.encode()), "r.xml", limit=1000)


def test_captured_output_is_not_kept(tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    with open(big, "w") as f:
        f.write('<testsuite><testcase classname="c" name="n"><failure/><system-out>')
        for _ in range(200):
            f.write("x" * 100_000)
        f.write("</system-out></testcase></testsuite>")
    [report] = read_reports(big)
    assert report.failed == [FailedTest("c", "", "n")]


def test_zip_of_reports(tmp_path: Path) -> None:
    archive = tmp_path / "junit.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("linux/junit.xml", junit(("t", "a", "failure")))
        z.writestr("mac/junit.xml", junit(("t", "b", "pass")))
        z.writestr("README.txt", "not a report")
    reports = read_reports(archive)
    assert [r.label for r in reports] == [f"{archive}:linux/junit.xml", f"{archive}:mac/junit.xml"]
    assert [len(r.failed) for r in reports] == [1, 0]


def test_bad_zips(tmp_path: Path) -> None:
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("notes.txt", "x")
    with pytest.raises(ReportError, match=r"contains no \.xml report"):
        read_reports(empty)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ReportError, match="not a readable ZIP archive"):
        read_reports(broken)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="cannot read"):
        read_reports(tmp_path / "gone.xml")
