"""Small JUnit XML documents for the tests."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

CHILD = {
    "pass": "",
    "failure": '<failure message="assert 0">Traceback…</failure>',
    "error": '<error message="boom">Traceback…</error>',
    "skipped": '<skipped message="not on linux"/>',
    "flaky": '<flakyFailure message="timeout"/><system-out>retried</system-out>',
    "rerun": '<failure message="x"/><rerunFailure message="x"/>',
}


def junit(*cases: tuple[str, str, str], declared: bool = True) -> str:
    """One <testsuites> with one <testsuite>; each case is (classname, name, outcome)."""
    failures = sum(1 for _, _, o in cases if o in ("failure", "rerun"))
    errors = sum(1 for _, _, o in cases if o == "error")
    counts = f' failures="{failures}" errors="{errors}"' if declared else ""
    body = "".join(
        f'<testcase classname={quoteattr(c)} name={quoteattr(n)} time="0.1">{CHILD[o]}</testcase>'
        for c, n, o in cases
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<testsuites><testsuite name="pytest" tests="{len(cases)}"{counts}>{body}'
        "</testsuite></testsuites>\n"
    )
