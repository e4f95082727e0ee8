"""Small JUnit documents and archives built in tests."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import quoteattr


def pytest_report(
    cases: list[tuple[str, str, str]],
    *,
    suite: str = "pytest",
    properties: dict[str, str] | None = None,
    hostname: str = "",
) -> bytes:
    """cases: (classname, name, outcome) with outcome passed|failed|error|skipped."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n<testsuites>']
    host = f" hostname={quoteattr(hostname)}" if hostname else ""
    parts.append(f'<testsuite name={quoteattr(suite)} tests="{len(cases)}"{host}>')
    if properties:
        parts.append("<properties>")
        parts.extend(
            f"<property name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in properties.items()
        )
        parts.append("</properties>")
    for classname, name, outcome in cases:
        attrs = f'classname={quoteattr(classname)} name={quoteattr(name)} time="0.010"'
        if outcome == "passed":
            parts.append(f"<testcase {attrs}/>")
        elif outcome == "failed":
            parts.append(
                f'<testcase {attrs}><failure message="AssertionError: assert 3 == 4" type="AssertionError">'
                "Traceback (most recent call last):\n  assert 3 == 4</failure></testcase>"
            )
        elif outcome == "error":
            parts.append(
                f'<testcase {attrs}><error message="fixture db failed" type="RuntimeError"/></testcase>'
            )
        else:
            parts.append(f'<testcase {attrs}><skipped message="not on linux"/></testcase>')
    parts.append("</testsuite></testsuites>\n")
    return "".join(parts).encode()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path
