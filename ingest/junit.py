"""Streaming, hardened reader of JUnit XML reports: pure Python, no Django.

This module turns one JUnit/xUnit report (pytest, Surefire, jest, mocha, go, .NET,
Bazel, PHPUnit and friends) into a stream of ``TestCaseRecord``s, one per
``<testcase>`` wherever it sits, and into per-file counts. It is responsible for
refusing anything that is not a readable JUnit report with a ``JUnitError`` whose
message a user can act on; for never loading a DTD, entity, XInclude or anything
else from the file system or network (every DOCTYPE is refused before libxml2
reads its internal subset); and for keeping memory bounded whatever the file
size: lxml holds the open ``<testcase>`` plus at most one 64 KiB read's worth of
tree, because everything already reported is unlinked after each read, and
hostile floods of elements or text are refused once they pass fixed budgets.
"""

from __future__ import annotations

import enum
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from lxml import etree

__all__ = [
    "LABEL_PROPERTY_NAMES",
    "FileSummary",
    "JUnitError",
    "Outcome",
    "TestCaseRecord",
    "iter_test_cases",
    "summarize",
]

# Suite <property> names that say which CI configuration ran the suite, best first.
LABEL_PROPERTY_NAMES = ("ci.job", "job", "matrix", "configuration")
_LABEL_RANK = {name: rank for rank, name in enumerate(LABEL_PROPERTY_NAMES)}

# hostname values that say nothing about the configuration (lower-cased).
_PLACEHOLDER_HOSTNAMES = frozenset(
    {"", "localhost", "localhost.localdomain", "127.0.0.1", "::1", "0.0.0.0", "hostname"}
    | {"unknown", "none", "null", "n/a", "(none)"}
)

# 64 KiB reads measured fastest: bigger chunks make lxml build more of the tree
# ahead of us (worse cache locality, more memory); smaller ones cost Python calls.
_READ_CHUNK = 64 * 1024
# What may pile up between two testcases (or suites) ending before the file is
# refused: elements lxml keeps (~130 bytes each, so 200k are ~26 MB) and bytes
# (text nodes are capped at 10 MB each by libxml2, but not their number). Real
# reports end a testcase every few tags; these only stop hostile floods.
_MAX_PENDING_ELEMENTS = 200_000
_MAX_PENDING_BYTES = 32 * 1024 * 1024
# Before the first event there is no tree handle to count elements exactly, so
# the '<' count (an upper bound: CDATA may hold '<' too) gets more slack.
_MAX_TAGS_BEFORE_FIRST_EVENT = 500_000
# The root start tag must appear within this many bytes, so that a file that is
# one giant comment cannot make us buffer it whole while looking for the root.
_MAX_PROLOG_BYTES = 1024 * 1024

# Never load a DTD or external entity, never touch the network, keep libxml2's
# default limits (depth 256, 10 MB text nodes), keep no ID table (it would grow
# with the file however much we clear).
_HARDENED_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "collect_ids": False,
    "remove_comments": True,
    "remove_pis": True,
}
_XINCLUDE_NAMESPACES = ("http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude")
# libxml2 errors that, raised at end of input, mean the file was cut short.
_UNFINISHED_CODES = frozenset(
    getattr(etree.ErrorTypes, name)
    for name in dir(etree.ErrorTypes)
    if name.endswith("_NOT_FINISHED") or name in ("ERR_GT_REQUIRED", "ERR_LTSLASH_REQUIRED")
)
_LOCATION_SUFFIX = re.compile(r",? line \d+, column \d+\s*$")
_PREMATURE_END = re.compile(r"Premature end of data in tag (\S+)")
_HUGE_HINT = re.compile(r",? *(try|use) XML_PARSE_HUGE( option)?")  # advice for C callers
# Whitespace plus the bytes of UTF-8/UTF-16 byte-order marks and UTF-16 padding.
_BLANK_BYTES = b" \t\r\n\x00\xef\xbb\xbf\xfe\xff"
_INF = math.inf
_MISSING = object()
# Bounds the per-parse cache of time strings (a few hundred KB at most).
_TIME_CACHE_SIZE = 4096


class Outcome(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


class JUnitError(ValueError):
    """The file is not a readable JUnit report; the message says why in plain words."""


@dataclass(slots=True)
class TestCaseRecord:
    """One <testcase>. The parser builds these positionally (it is the hot path):
    keep the field order in step with ``_parse``."""

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


def summarize(stream: BinaryIO, *, max_message_chars: int = 8192) -> FileSummary:
    """Count testcases by the MANIFEST definitions; raises JUnitError for unreadable files."""
    summary = FileSummary()
    for record in iter_test_cases(stream, max_message_chars=max_message_chars):
        summary.tests += 1
        summary.passed += record.outcome is Outcome.PASSED
        summary.failures += record.has_failure
        summary.errors += record.has_error
        summary.skipped += record.has_skipped
        summary.flaky_reruns += record.flaky_reruns
        summary.rerun_failures += record.rerun_failures
    return summary


def iter_test_cases(stream: BinaryIO, *, max_message_chars: int = 8192) -> Iterator[TestCaseRecord]:
    """Yield one record per <testcase>, holding at most one element in memory.

    "One element" is the open <testcase> with its children, plus the tree of at
    most one 64 KiB read that is unlinked once its records are out. Raises
    JUnitError (possibly after yielding some records) when the file is
    unreadable; errors the stream's read() raises propagate unchanged. ``label``
    comes from the innermost enclosing suite that has one; a label property
    written after a suite's first testcases applies from there on.
    """
    if max_message_chars < 0:
        raise ValueError("max_message_chars must be >= 0")
    return _parse(stream, max_message_chars)


# ---------------------------------------------------------------------------
# The prolog guard: libxml2 reports a DOCTYPE to a parser target before it reads
# the internal subset, so raising there refuses every DTD before any entity or
# parameter entity is declared or expanded, in whatever encoding libxml2 detects
# (UTF-16 included). It also yields the root tag so that non-JUnit roots are
# refused before the main parse starts.
# ---------------------------------------------------------------------------


class _RootSeen(Exception):
    def __init__(self, tag: str) -> None:
        self.tag = tag


class _DoctypeSeen(Exception):
    pass


class _PrologGuard:
    def start(self, tag: str, attrib: object, nsmap: object = None) -> None:
        raise _RootSeen(tag)

    def doctype(self, name: str | None, pubid: str | None, system: str | None) -> None:
        raise _DoctypeSeen

    def end(self, tag: str) -> None:  # never reached: start() stops the parse
        pass

    def data(self, data: str) -> None:
        pass

    def close(self) -> None:
        return None


def _read_prolog(stream: BinaryIO) -> tuple[list[bytes], str]:
    """Return the chunks read up to and including the root start tag, and that tag."""
    guard = etree.XMLParser(target=_PrologGuard(), **_HARDENED_OPTIONS)
    chunks: list[bytes] = []
    total = 0
    while True:
        data = stream.read(_READ_CHUNK)
        at_end = not data
        if at_end and total == 0:
            raise JUnitError("file is empty")
        if not at_end:
            chunks.append(data)
            total += len(data)
        try:
            if at_end:
                guard.close()
            else:
                guard.feed(data)
        except _RootSeen as seen:
            return chunks, seen.tag
        except _DoctypeSeen:
            raise JUnitError(
                "DOCTYPE declarations are refused: a JUnit report never needs one, "
                "and they are the vehicle of entity-expansion and external-entity attacks"
            ) from None
        except etree.XMLSyntaxError as exc:
            if all(not chunk.strip(_BLANK_BYTES) for chunk in chunks):
                raise JUnitError("file is empty (only whitespace or NUL bytes)") from exc
            raise _describe_syntax_error(exc, at_end=at_end, head=chunks[0][:8]) from exc
        if at_end:
            raise JUnitError("not a JUnit report: the file has no root element")
        if total > _MAX_PROLOG_BYTES:
            raise JUnitError("not a JUnit report: no complete root start tag in the first 1 MiB")


def _describe_syntax_error(exc: etree.XMLSyntaxError, *, at_end: bool, head: bytes) -> JUnitError:
    msg, code, (line, column) = exc.msg or "", exc.code, exc.position
    if msg == "no element found" or not msg:
        # lxml's generic close() message; the cause is in the error log.
        last = exc.error_log.last_error if exc.error_log else None
        if last is not None:
            msg, code, line, column = last.message, last.type, last.line, last.column
    msg = _LOCATION_SUFFIX.sub("", msg.strip()).strip()
    where = f"line {line}, column {column}"
    types = etree.ErrorTypes
    if code == types.ERR_INVALID_ENCODING:
        return JUnitError(f"invalid UTF-8 (or bytes invalid in the declared encoding) at {where}")
    if code in (types.ERR_UNSUPPORTED_ENCODING, types.ERR_UNKNOWN_ENCODING):
        return JUnitError(f"unsupported character encoding at {where}: {msg}")
    if code == types.ERR_RESOURCE_LIMIT and "depth" in msg:
        return JUnitError(f"elements are nested too deeply (more than 256 levels) at {where}")
    if code == types.ERR_RESOURCE_LIMIT or "too big" in msg:
        msg = _HUGE_HINT.sub("", msg.removeprefix("Resource limit exceeded: ")).strip(" ,")
        return JUnitError(f"resource limit exceeded at {where}: {msg} (libxml2 caps at 10 MB)")
    if at_end and code == types.ERR_DOCUMENT_EMPTY:
        return JUnitError(f"not a JUnit report: the file has no root element ({where})")
    if line <= 1 and column <= 1 and code == types.ERR_DOCUMENT_EMPTY:
        kind = _binary_kind(head) or "the file does not start with '<' (line 1, column 1)"
        return JUnitError(f"not XML: {kind}")
    if at_end and (premature := _PREMATURE_END.match(msg)):
        return JUnitError(f"truncated XML: the file ends inside <{premature[1]}> ({where})")
    if at_end and code in _UNFINISHED_CODES:
        return JUnitError(f"truncated XML: the file ends too early ({msg} at {where})")
    return JUnitError(f"not well-formed XML at {where}: {msg}")


def _binary_kind(head: bytes) -> str:
    for magic, kind in (
        (b"\x1f\x8b", "the file is gzip-compressed"),
        (b"PK\x03\x04", "the file is a zip archive"),
        (b"%PDF", "the file is a PDF"),
        (b"{", "the file looks like JSON"),
    ):
        if head.startswith(magic):
            return kind
    return ""


# ---------------------------------------------------------------------------
# The main parse.
# ---------------------------------------------------------------------------


def _parse(stream: BinaryIO, max_chars: int) -> Iterator[TestCaseRecord]:
    chunks, root_tag = _read_prolog(stream)
    head = chunks[0][:8]  # for error messages; the chunks go once replayed
    ns = root_tag[: root_tag.index("}") + 1] if root_tag.startswith("{") else ""
    local_root = root_tag[len(ns) :]
    if local_root not in ("testsuites", "testsuite"):
        raise JUnitError(f"not a JUnit report: root element is <{local_root}>")

    tc_tag, ts_tag, tss_tag, props_tag = (
        ns + "testcase",
        ns + "testsuite",
        ns + "testsuites",
        ns + "properties",
    )
    failure_tag, error_tag, skipped_tag = ns + "failure", ns + "error", ns + "skipped"
    flaky_tags = (ns + "flakyFailure", ns + "flakyError")
    rerun_tags = (ns + "rerunFailure", ns + "rerunError")
    passed, failed, errored, skipped = (
        Outcome.PASSED,
        Outcome.FAILED,
        Outcome.ERROR,
        Outcome.SKIPPED,
    )
    record, missing = TestCaseRecord, _MISSING  # locals: the loop below is the hot path

    # Only the elements we act on come back to Python; everything else stays in C.
    parser = etree.XMLPullParser(
        events=("end",),
        tag=(tc_tag, ts_tag, props_tag, *(f"{{{x}}}*" for x in _XINCLUDE_NAMESPACES)),
        **_HARDENED_OPTIONS,
    )
    feed, read_events, read = parser.feed, parser.read_events, stream.read

    labels: dict[etree._Element, str] = {}  # open suite -> label from its <properties>
    context_parent: etree._Element | None = None  # parent of the last testcase seen
    suite_name = label = last_classname = last_file = ""
    nested = False  # the last testcase's parent sits inside another testcase
    root: etree._Element | None = None
    pending_tags = pending_bytes = 0
    time_cache: dict[str, float | None] = {}
    pending = iter(chunks)
    del chunks
    while True:
        data = next(pending, None)
        if data is None:
            data = read(_READ_CHUNK)
        error: etree.XMLSyntaxError | None = None
        try:
            if data:
                feed(data)
            else:
                parser.close()
        except etree.XMLSyntaxError as exc:
            # Report what was complete before the error, then raise.
            error = exc

        events = read_events()
        if root is None:
            batch = list(events)
            if batch:
                tree = batch[0][1].getroottree()
                root = tree.getroot()
                # Belt and braces behind the prolog guard, checked before the
                # first record leaves: the main parser's document has no DTD.
                if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
                    raise JUnitError("DOCTYPE declarations are refused")
            events = iter(batch)

        progressed = False
        for _, elem in events:
            tag = elem.tag
            if tag == tc_tag:
                parent = elem.getparent()
                if parent is not context_parent:
                    context_parent = parent
                    suite_name, label, nested = _suite_context(parent, ts_tag, tc_tag, labels)
                # Testcases inside a testcase do not count as progress: their
                # container cannot be pruned until it ends.
                progressed = progressed or not nested
                get = elem.get
                line = get("line")
                if line is not None:
                    try:
                        line = int(line)
                    except ValueError:
                        line = None
                raw_time = get("time")
                if raw_time is None:
                    seconds = None
                else:
                    # Most reporters write three decimals, so a few thousand
                    # distinct strings cover a whole file; float() costs more.
                    seconds = time_cache.get(raw_time, missing)
                    if seconds is missing:
                        seconds = _parse_seconds(raw_time)
                        if len(time_cache) < _TIME_CACHE_SIZE:
                            time_cache[raw_time] = seconds
                # Consecutive testcases mostly share classname and file: share the
                # string objects too (cheaper than sys.intern, same effect in practice).
                classname = get("classname") or ""
                if classname == last_classname:
                    classname = last_classname
                else:
                    last_classname = classname
                file = get("file") or ""
                if file == last_file:
                    file = last_file
                else:
                    last_file = file
                name = get("name") or ""

                if len(elem) == 0:
                    rec = record(suite_name, classname, name, file, line, seconds, passed,
                                 False, False, False, "", "", "", 0, 0, label)  # fmt: skip
                else:
                    failure = err = skip = None
                    flaky = reruns = 0
                    for child in elem:
                        ctag = child.tag
                        if ctag == failure_tag:
                            if failure is None:
                                failure = child
                        elif ctag == error_tag:
                            if err is None:
                                err = child
                        elif ctag == skipped_tag:
                            if skip is None:
                                skip = child
                        elif ctag in flaky_tags:
                            flaky += 1
                        elif ctag in rerun_tags:
                            reruns += 1
                    cause = err if err is not None else failure
                    if cause is not None:
                        body = _text(cause)
                        message = cause.get("message") or body
                        rec = record(suite_name, classname, name, file, line, seconds,
                                     errored if err is not None else failed,
                                     failure is not None, err is not None, skip is not None,
                                     message[:max_chars], cause.get("type") or "",
                                     body[:max_chars], flaky, reruns, label)  # fmt: skip
                    elif skip is not None:
                        message = skip.get("message") or _text(skip)
                        rec = record(suite_name, classname, name, file, line, seconds, skipped,
                                     False, False, True, message[:max_chars], "", "",
                                     flaky, reruns, label)  # fmt: skip
                    else:
                        rec = record(suite_name, classname, name, file, line, seconds, passed,
                                     False, False, False, "", "", "",
                                     flaky, reruns, label)  # fmt: skip

                yield rec

            elif tag == ts_tag:
                labels.pop(elem, None)
                context_parent = None
                progressed = progressed or not _inside_testcase(elem, tc_tag)

            elif tag == props_tag:
                parent = elem.getparent()
                if parent is not None and parent.tag in (ts_tag, tss_tag):
                    value = _label_from_properties(elem)
                    if value:
                        labels[parent] = value
                        context_parent = None  # later testcases pick the label up

            else:
                raise JUnitError(
                    f"XInclude elements are refused (<{etree.QName(tag).localname}> at "
                    f"line {elem.sourceline}): a JUnit report never includes other files"
                )

        if error is not None:
            raise _describe_syntax_error(error, at_end=not data, head=head) from error
        if not data:
            return
        # Memory bound, part 1: whatever we have reported on goes, in one C-level
        # slice delete per level, instead of clear() and unlink per element.
        if root is not None:
            _prune(root, tc_tag, props_tag)
        # Part 2: what we get no event for (an open testcase, junk elements,
        # text) cannot pile up unseen. Only chunks without progress are charged.
        if progressed:
            pending_tags = pending_bytes = 0
        else:
            pending_bytes += len(data)
            # Every element costs a '<' (in UTF-16 too): a cheap upper bound.
            pending_tags += data.count(b"<")
            if pending_bytes > _MAX_PENDING_BYTES:
                raise _flood_error(f"{_MAX_PENDING_BYTES // (1024 * 1024)} MB")
            if root is None:
                if pending_tags > _MAX_TAGS_BEFORE_FIRST_EVENT:
                    raise _flood_error(f"{_MAX_TAGS_BEFORE_FIRST_EVENT:,} tags")
            elif pending_tags > _MAX_PENDING_ELEMENTS:
                # The '<' count overcounts CDATA; count what lxml really holds.
                pending_tags = sum(1 for _ in root.iter())
                if pending_tags > _MAX_PENDING_ELEMENTS:
                    raise _flood_error(f"{_MAX_PENDING_ELEMENTS:,} elements")


def _flood_error(amount: str) -> JUnitError:
    return JUnitError(
        f"refused to bound memory: over {amount} of XML without a <testcase> or "
        "<testsuite> ending (not a JUnit report, or a testcase far too large)"
    )


def _prune(root: etree._Element, tc_tag: str, props_tag: str) -> None:
    """Unlink every finished element that events have already been handled for.

    Only the last child at each level can still be open, so along the chain of
    last children everything before it is finished and reported. A <testcase>
    or <properties> keeps its children: its own end event still needs them.
    """
    node = root
    while True:
        count = len(node)
        if count == 0:
            return
        if count > 1:
            del node[: count - 1]
        node = node[0]
        if node.tag == tc_tag or node.tag == props_tag:
            return


def _inside_testcase(elem: etree._Element, tc_tag: str) -> bool:
    node = elem.getparent()
    while node is not None:
        if node.tag == tc_tag:
            return True
        node = node.getparent()
    return False


def _suite_context(
    parent: etree._Element | None, ts_tag: str, tc_tag: str, labels: dict[etree._Element, str]
) -> tuple[str, str, bool]:
    """Innermost enclosing suite's name, innermost label going outward, and
    whether ``parent`` is itself a testcase or inside one."""
    name: str | None = None
    label = ""
    nested = False
    node = parent
    while node is not None:
        tag = node.tag
        if tag == ts_tag:
            if name is None:
                name = node.get("name") or ""
            if not label:
                label = labels.get(node) or _hostname_label(node.get("hostname"))
        elif tag == tc_tag:
            nested = True
        elif not label and node in labels:  # a <testsuites> root with properties
            label = labels[node]
        node = node.getparent()
    return sys.intern(name or ""), label, nested


def _hostname_label(hostname: str | None) -> str:
    if not hostname:
        return ""
    hostname = hostname.strip()
    return "" if hostname.lower() in _PLACEHOLDER_HOSTNAMES else hostname


def _label_from_properties(properties: etree._Element) -> str:
    # A Surefire suite carries dozens of properties: one dict probe per child
    # keeps this to the unavoidable cost of reading each name.
    best, best_rank = "", len(LABEL_PROPERTY_NAMES)
    for prop in properties:
        rank = _LABEL_RANK.get(prop.get("name"))  # type: ignore[arg-type]
        if rank is not None and rank < best_rank:
            value = prop.get("value")
            value = (prop.text if value is None else value) or ""
            if value.strip():
                best, best_rank = value.strip(), rank
                if rank == 0:
                    break
    return best


def _text(elem: etree._Element) -> str:
    """Text body of a failure/error/skipped element, CDATA included, edges stripped."""
    if len(elem):
        return "".join(elem.itertext()).strip()
    return (elem.text or "").strip()


def _parse_seconds(raw: str) -> float | None:
    """Seconds from a time attribute; None when unusable (empty, NaN, inf, negative).

    Also reads what float() refuses but reporters write: "1,234.5" (grouping)
    and "0,25" (decimal comma).
    """
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if 0.0 <= seconds < _INF else None
    value = raw.strip()
    if "," in value:
        if "." in value:
            # Both separators: the last one is the decimal point.
            if value.rfind(",") > value.rfind("."):
                value = value.replace(".", "").replace(",", ".")
            else:
                value = value.replace(",", "")
        elif re.fullmatch(r"[1-9]\d{0,2}(,\d{3})+", value):
            value = value.replace(",", "")  # 1,234 as written with grouping
        else:
            value = value.replace(",", ".")  # 0,25 as written in a comma locale
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0.0 <= seconds < _INF else None
