"""The streaming parse: ``iter_test_cases`` and ``summarize``, and the loop behind them.

After the prolog guard has vetted the file up to its root, one ``XMLPullParser``
hands back only the elements acted on (testcases, suites, properties, XInclude)
and turns each ``<testcase>`` into a ``TestCaseRecord``. This module also keeps
memory bounded: after every read it unlinks everything already reported, and it
charges reads that end no testcase or suite against the budgets in
``ingest.junit.hardening``. The loop is the hot path of ingestion, so it keeps
its lookups local and builds records positionally.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from lxml import etree

from ingest.junit.errors import JUnitError, describe_syntax_error, flood_error
from ingest.junit.hardening import (
    HARDENED_OPTIONS,
    MAX_PENDING_BYTES,
    MAX_PENDING_ELEMENTS,
    MAX_TAGS_BEFORE_FIRST_EVENT,
    READ_CHUNK,
    XINCLUDE_NAMESPACES,
)
from ingest.junit.prolog import read_prolog
from ingest.junit.records import FileSummary, Outcome, TestCaseRecord
from ingest.junit.suites import label_from_properties, suite_context
from ingest.junit.values import element_text, parse_seconds, trace_text

# Roots read as JUnit: a <testsuites> collection, a lone <testsuite>, or the <testrun> of
# Eclipse's JUnit export (suites nested in suites, as junit2html also reads them).
JUNIT_ROOTS = frozenset({"testsuites", "testsuite", "testrun"})

_MISSING: Any = object()  # Any: a cache miss, told apart by identity before use
# Bounds the per-parse cache of time strings (a few hundred KB at most).
_TIME_CACHE_SIZE = 4096


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


def _parse(stream: BinaryIO, max_chars: int) -> Iterator[TestCaseRecord]:
    chunks, root_tag = read_prolog(stream)
    head = chunks[0][:8]  # for error messages; the chunks go once replayed
    ns = root_tag[: root_tag.index("}") + 1] if root_tag.startswith("{") else ""
    local_root = root_tag[len(ns) :]
    if local_root not in JUNIT_ROOTS:
        raise JUnitError(f"not a JUnit report: root element is <{local_root}>")
    # Eclipse's export (and what junit2html reads back) marks an @Ignore'd test with an
    # attribute and no child: it was not run, so it is skipped, not passed.
    eclipse = local_root == "testrun"

    tc_tag, ts_tag, props_tag = ns + "testcase", ns + "testsuite", ns + "properties"
    # Where a <properties> may carry a label: a suite, or the root that groups suites.
    props_parents = (ts_tag, ns + "testsuites", ns + "testrun")
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
        tag=(tc_tag, ts_tag, props_tag, *(f"{{{x}}}*" for x in XINCLUDE_NAMESPACES)),
        **HARDENED_OPTIONS,
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
            data = read(READ_CHUNK)
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
                    suite_name, label, nested = suite_context(parent, ts_tag, tc_tag, labels)
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
                        seconds = parse_seconds(raw_time)
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
                    if eclipse and get("ignored") == "true":
                        rec = record(suite_name, classname, name, file, line, seconds, skipped,
                                     False, False, True, "", "", "", 0, 0, label)  # fmt: skip
                    else:
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
                        # Eclipse writes <expected> and <actual> ahead of the trace.
                        body = trace_text(cause) if eclipse else element_text(cause)
                        message = cause.get("message") or body
                        rec = record(suite_name, classname, name, file, line, seconds,
                                     errored if err is not None else failed,
                                     failure is not None, err is not None, skip is not None,
                                     message[:max_chars], cause.get("type") or "",
                                     body[:max_chars], flaky, reruns, label)  # fmt: skip
                    elif skip is not None:
                        message = skip.get("message") or element_text(skip)
                        rec = record(suite_name, classname, name, file, line, seconds, skipped,
                                     False, False, True, message[:max_chars], "", "",
                                     flaky, reruns, label)  # fmt: skip
                    else:
                        ignored = eclipse and get("ignored") == "true"
                        rec = record(suite_name, classname, name, file, line, seconds,
                                     skipped if ignored else passed, False, False, ignored,
                                     "", "", "", flaky, reruns, label)  # fmt: skip

                yield rec

            elif tag == ts_tag:
                labels.pop(elem, None)
                context_parent = None
                progressed = progressed or not _inside_testcase(elem, tc_tag)

            elif tag == props_tag:
                parent = elem.getparent()
                if parent is not None and parent.tag in props_parents:
                    value = label_from_properties(elem)
                    if value:
                        labels[parent] = value
                        context_parent = None  # later testcases pick the label up

            else:
                raise JUnitError(
                    f"XInclude elements are refused (<{etree.QName(tag).localname}> at "
                    f"line {elem.sourceline}): a JUnit report never includes other files"
                )

        if error is not None:
            raise describe_syntax_error(error, at_end=not data, head=head) from error
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
            if pending_bytes > MAX_PENDING_BYTES:
                raise flood_error(f"{MAX_PENDING_BYTES // (1024 * 1024)} MB")
            if root is None:
                if pending_tags > MAX_TAGS_BEFORE_FIRST_EVENT:
                    raise flood_error(f"{MAX_TAGS_BEFORE_FIRST_EVENT:,} tags")
            elif pending_tags > MAX_PENDING_ELEMENTS:
                # The '<' count overcounts CDATA; count what lxml really holds.
                pending_tags = sum(1 for _ in root.iter())
                if pending_tags > MAX_PENDING_ELEMENTS:
                    raise flood_error(f"{MAX_PENDING_ELEMENTS:,} elements")


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
