"""Check-run rendering: a commit's failed tests in, the body of its ``FlakeGuard`` check run out.

Pure (no Django): ``render_check_run`` takes plain ``FailedTest`` records and the
repository's conclusion policy and returns what GitHub's check-runs API takes:
the conclusion, a title, a Markdown summary that separates new failures from
known flakes, one annotation per failed test, and the "Quarantine flakes"
button when some flaky test that failed is not quarantined yet. Every text is
bounded by GitHub's limits (summary 65,535 characters, annotation message and
raw details 64 KB), so a commit with thousands of failures still renders a
body GitHub accepts; what does not fit is counted, not dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis.scoring import TestStatus

# Conclusion policies (the values of polling.models.ConclusionPolicy).
NEUTRAL_WHEN_ALL_FLAKY = "neutral_when_all_flaky"
SUCCESS_WHEN_ALL_FLAKY = "success_when_all_flaky"
ALWAYS_NEUTRAL = "always_neutral"
POLICIES = frozenset({NEUTRAL_WHEN_ALL_FLAKY, SUCCESS_WHEN_ALL_FLAKY, ALWAYS_NEUTRAL})

SUCCESS, NEUTRAL, FAILURE = "success", "neutral", "failure"
WARNING_LEVEL, FAILURE_LEVEL = "warning", "failure"

# GitHub's limits. Sizes are counted in UTF-8 bytes, which is never less than
# the characters GitHub counts, so a body within them is within GitHub's.
SUMMARY_MAX_BYTES = 65_535
ANNOTATION_TEXT_MAX_BYTES = 64_000  # message and raw_details: "64 KB" each
ANNOTATION_TITLE_MAX_CHARS = 255

# What one failure may take in the summary, so that entries stay readable and
# the truncation arithmetic stays simple.
ENTRY_TEXT_CHARS = 300
EVIDENCE_LINES_SHOWN = 3
# Room kept for each section's heading and its "not shown" line.
SECTION_RESERVE_BYTES = 200

QUARANTINE_ACTION_ID = "quarantine"
# label ≤ 20 characters, description ≤ 40, identifier ≤ 20 (GitHub's limits).
QUARANTINE_ACTION = {
    "label": "Quarantine flakes",
    "description": "Quarantine flaky tests that failed here",
    "identifier": QUARANTINE_ACTION_ID,
}

_VERDICT_NOTES = {
    TestStatus.NEW: "new test",
    TestStatus.STABLE: "stable until now",
    TestStatus.FAILING: "already failing",
    "": "not scored yet",
}
# ":123" after "path/to/file.ext", the way tracebacks and compilers name a line.
_LINE_REF = re.compile(r":(\d+)")
_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/\\")
_LOCATION_SCAN_CHARS = 16_384
_LOCATIONS_TRIED = 50
_PATH_MAX_CHARS = 400


@dataclass(frozen=True)
class FailedTest:
    """One test that failed in the commit, with what is known about it."""

    test_id: int
    name: str
    classname: str = ""
    file: str = ""
    message: str = ""
    jobs: tuple[str, ...] = ()
    verdict: str = ""  # a TestStatus verdict (not quarantined); "" when never scored
    score: float = 0.0
    quarantined: bool = False
    evidence: tuple[str, ...] = ()  # one line per event, newest first

    @property
    def known_flaky(self) -> bool:
        """A failure people need not look into: a flake, or a test someone quarantined."""
        return self.verdict == TestStatus.FLAKY or self.quarantined

    @property
    def display_name(self) -> str:
        return f"{self.classname}::{self.name}" if self.classname else self.name


@dataclass(frozen=True)
class RenderedCheckRun:
    conclusion: str
    title: str
    summary: str
    annotations: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, str]] = field(default_factory=list)
    new_failures: int = 0
    known_flaky_failures: int = 0
    # The tests the "Quarantine flakes" button quarantines: flaky, not quarantined.
    to_quarantine: list[int] = field(default_factory=list)

    def output(self, annotations: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """The ``output`` object of one request, carrying one batch of annotations."""
        body: dict[str, Any] = {"title": self.title, "summary": self.summary}
        if annotations:
            body["annotations"] = list(annotations)
        return body


def render_check_run(
    failures: Sequence[FailedTest],
    *,
    policy: str = NEUTRAL_WHEN_ALL_FLAKY,
    max_summary_bytes: int = SUMMARY_MAX_BYTES,
    max_annotations: int | None = None,
) -> RenderedCheckRun:
    """The check run of a commit whose failed tests are ``failures``.

    ``max_annotations`` bounds how many failures get an annotation (new
    failures first); every failure is still counted in the summary.
    """
    new = sorted((t for t in failures if not t.known_flaky), key=lambda t: t.display_name)
    known = sorted((t for t in failures if t.known_flaky), key=lambda t: (-t.score, t.display_name))
    conclusion = conclusion_for(
        new_failures=len(new), known_flaky_failures=len(known), policy=policy
    )
    to_quarantine = [
        t.test_id for t in known if t.verdict == TestStatus.FLAKY and not t.quarantined
    ]
    annotated = [*new, *known]
    if max_annotations is not None:
        annotated = annotated[: max(0, max_annotations)]
    annotations = [a for a in (annotation_for(t) for t in annotated) if a is not None]
    notes = []
    if len(annotated) < len(failures):
        notes.append(f"Annotations are shown for the first {len(annotated):,} failures.")
    return RenderedCheckRun(
        conclusion=conclusion,
        title=_title(len(new), len(known)),
        summary=_summary(new, known, conclusion, notes, max_summary_bytes),
        annotations=annotations,
        actions=[dict(QUARANTINE_ACTION)] if to_quarantine else [],
        new_failures=len(new),
        known_flaky_failures=len(known),
        to_quarantine=to_quarantine,
    )


def conclusion_for(*, new_failures: int, known_flaky_failures: int, policy: str) -> str:
    """success without failures; failure when any is new; else neutral or success per policy."""
    if policy not in POLICIES:
        raise ValueError(f"unknown conclusion policy {policy!r}")
    if policy == ALWAYS_NEUTRAL:
        return NEUTRAL
    if new_failures:
        return FAILURE
    if not known_flaky_failures:
        return SUCCESS
    return SUCCESS if policy == SUCCESS_WHEN_ALL_FLAKY else NEUTRAL


def annotation_location(*, file: str, classname: str, message: str) -> tuple[str, int] | None:
    """(path, line) to annotate, or None when the test names no place in the repository.

    The path is the test's file, else its class name with dots as slashes. The
    line is 1 unless the failure message names ``file.ext:N`` of that file; for
    a class name, a file whose path without extension leads the class name
    (pytest's ``tests/test_shop.py:42`` for ``tests.test_shop.TestCart``) gives
    both the path and the line. Anything subtler is left to the summary.
    """
    file = file.strip().replace("\\", "/").removeprefix("./")
    from_class = classname.strip().replace(".", "/")
    path = file or from_class
    if not path:
        return None
    for found, line in _line_references(message[:_LOCATION_SCAN_CHARS]):
        if file:
            if found == file or found.endswith("/" + file) or file.endswith("/" + found):
                return file, line
        else:
            stem = found.rsplit(".", 1)[0]
            if from_class == stem or from_class.startswith(stem + "/"):
                return found, line
    return path, 1


def _line_references(text: str) -> Iterator[tuple[str, int]]:
    """("path/file.ext", line) for each "path/file.ext:line" in the text, in order.

    A scan back from each ":N" rather than one regular expression, which
    would backtrack quadratically over long runs of word characters.
    """
    for tried, match in enumerate(_LINE_REF.finditer(text)):
        if tried >= _LOCATIONS_TRIED:
            return
        end = start = match.start()
        while start > 0 and end - start < _PATH_MAX_CHARS and text[start - 1] in _PATH_CHARS:
            start -= 1
        stem, dot, extension = text[start:end].rpartition(".")
        line = int(match.group(1))
        if not (stem and dot and extension[:1].isalpha() and extension.isidentifier() and line):
            continue
        yield text[start:end].replace("\\", "/").removeprefix("./"), line


def annotation_for(test: FailedTest) -> dict[str, Any] | None:
    """The annotation of one failed test: a warning for a known flake, a failure otherwise."""
    location = annotation_location(file=test.file, classname=test.classname, message=test.message)
    if location is None:
        return None
    path, line = location
    where = f" in {', '.join(test.jobs)}" if test.jobs else ""
    if test.known_flaky:
        level = WARNING_LEVEL
        title = f"Known flaky: {test.display_name}"
        intro = (
            f"Known flaky test ({_flakiness(test)}, {_quarantine_state(test)}) failed{where}. "
            "This is not a new failure."
        )
    else:
        level = FAILURE_LEVEL
        title = f"New failure: {test.display_name}"
        intro = f"Failed{where} ({_VERDICT_NOTES.get(test.verdict, test.verdict)})."
    message = f"{intro}\n\n{test.message}" if test.message.strip() else intro
    annotation: dict[str, Any] = {
        "path": path,
        "start_line": line,
        "end_line": line,
        "annotation_level": level,
        "title": _clip(title, ANNOTATION_TITLE_MAX_CHARS),
        "message": _clip_bytes(message, ANNOTATION_TEXT_MAX_BYTES),
    }
    if test.evidence:
        annotation["raw_details"] = _clip_bytes(
            "Evidence, newest first:\n" + "\n".join(test.evidence), ANNOTATION_TEXT_MAX_BYTES
        )
    return annotation


# --- summary ------------------------------------------------------------------


def _title(new: int, known: int) -> str:
    if not new and not known:
        return "No test failures"
    if not new:
        return f"{_plural(known, 'failure')}, all known flaky"
    title = _plural(new, "new failure")
    return f"{title}, {known:,} known flaky" if known else title


def _summary(
    new: list[FailedTest],
    known: list[FailedTest],
    conclusion: str,
    notes: list[str],
    limit: int,
) -> str:
    if not new and not known:
        return "No test failed in the analyzed runs of this commit."
    parts = [
        f"**{_plural(len(new), 'new failure')}** and "
        f"**{_plural(len(known), 'known flaky failure')}** in the analyzed runs of this commit "
        f"(conclusion: {conclusion}).",
        *notes,
    ]
    sections: list[tuple[str, list[FailedTest], Callable[[FailedTest], str]]] = [
        (title, tests, entry)
        for title, tests, entry in (
            ("New failures", new, _new_entry),
            ("Known flaky", known, _flaky_entry),
        )
        if tests
    ]
    used = _size("\n".join(parts))
    # Room is kept for the headings and "not shown" lines of every section, so
    # that a long first section cannot crowd the second out of the summary.
    reserve = SECTION_RESERVE_BYTES * len(sections)
    for title, tests, entry in sections:
        heading = f"\n## {title} ({len(tests):,})\n"
        parts.append(heading)
        used += _size(heading) + 1
        reserve -= SECTION_RESERVE_BYTES
        shown = 0
        for test in tests:
            block = entry(test)
            cost = _size(block) + 1
            if used + cost + SECTION_RESERVE_BYTES + reserve > limit:
                break
            parts.append(block)
            used += cost
            shown += 1
        if shown < len(tests):
            more = f"\n_… and {len(tests) - shown:,} more not shown._"
            parts.append(more)
            used += _size(more) + 1
    return "\n".join(parts)


def _new_entry(test: FailedTest) -> str:
    note = _VERDICT_NOTES.get(test.verdict, test.verdict)
    lines = [f"- {_code(test.display_name)} ({note}){_jobs(test)}"]
    first = _first_line(test.message)
    if first:
        lines.append(f"  {_code(first)}")
    return "\n".join(lines)


def _flaky_entry(test: FailedTest) -> str:
    lines = [
        f"- {_code(test.display_name)}: {_flakiness(test)}, {_quarantine_state(test)}{_jobs(test)}"
    ]
    lines.extend(
        f"  - {_escape(_clip(line, ENTRY_TEXT_CHARS))}"
        for line in test.evidence[:EVIDENCE_LINES_SHOWN]
    )
    return "\n".join(lines)


def _flakiness(test: FailedTest) -> str:
    return (
        f"flakiness {test.score:.2f}"
        if test.verdict == TestStatus.FLAKY
        else f"verdict {test.verdict or 'none'}"
    )


def _quarantine_state(test: FailedTest) -> str:
    return "quarantined" if test.quarantined else "not quarantined"


def _jobs(test: FailedTest) -> str:
    if not test.jobs:
        return ""
    shown = ", ".join(_code(_clip(job, 80)) for job in test.jobs[:5])
    more = f" and {len(test.jobs) - 5} more" if len(test.jobs) > 5 else ""
    return f", failed in {shown}{more}"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return _clip(line.strip(), ENTRY_TEXT_CHARS)
    return ""


def _code(text: str) -> str:
    """``text`` as a Markdown code span, whatever backticks it holds."""
    text = _clip(text.replace("\n", " "), ENTRY_TEXT_CHARS)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    # CommonMark strips one space on each side; needed when the text touches a fence.
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _escape(text: str) -> str:
    """Plain text in Markdown: no emphasis, links or HTML from test output."""
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", text)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _clip_bytes(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    marker = "\n… (truncated)"
    return encoded[: limit - _size(marker)].decode("utf-8", "ignore") + marker
