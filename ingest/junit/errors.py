"""``JUnitError`` and the plain-words messages it carries.

The parser refuses an unreadable file with one exception type, ``JUnitError``,
whose message a user can act on. This module owns that type and the translation
of libxml2's syntax errors (codes, positions and C-caller advice) into such
messages -- empty, binary, truncated, badly encoded, too deep, too big -- plus
the message for a flood refused to keep memory bounded.
"""

from __future__ import annotations

import re

from lxml import etree

# libxml2 errors that, raised at end of input, mean the file was cut short.
_UNFINISHED_CODES = frozenset(
    getattr(etree.ErrorTypes, name)
    for name in dir(etree.ErrorTypes)
    if name.endswith("_NOT_FINISHED") or name in ("ERR_GT_REQUIRED", "ERR_LTSLASH_REQUIRED")
)
_LOCATION_SUFFIX = re.compile(r",? line \d+, column \d+\s*$")
_PREMATURE_END = re.compile(r"Premature end of data in tag (\S+)")
_HUGE_HINT = re.compile(r",? *(try|use) XML_PARSE_HUGE( option)?")  # advice for C callers


class JUnitError(ValueError):
    """The file is not a readable JUnit report; the message says why in plain words."""


def describe_syntax_error(exc: etree.XMLSyntaxError, *, at_end: bool, head: bytes) -> JUnitError:
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


def flood_error(amount: str) -> JUnitError:
    return JUnitError(
        f"refused to bound memory: over {amount} of XML without a <testcase> or "
        "<testsuite> ending (not a JUnit report, or a testcase far too large)"
    )
