"""The prolog guard: everything a report says before its root start tag, checked first.

libxml2 reports a DOCTYPE to a parser target before it reads the internal subset,
so raising there refuses every DTD before any entity or parameter entity is
declared or expanded, in whatever encoding libxml2 detects (UTF-16 included).
The guard also yields the root tag, so that non-JUnit roots are refused before the
main parse starts, and refuses empty files, binary files and prologs that never
reach a root within ``MAX_PROLOG_BYTES``. The chunks it read are handed back for
the main parse to replay.
"""

from __future__ import annotations

from typing import BinaryIO

from lxml import etree

from ingest.junit.errors import JUnitError, describe_syntax_error
from ingest.junit.hardening import HARDENED_OPTIONS, MAX_PROLOG_BYTES, READ_CHUNK

# Whitespace plus the bytes of UTF-8/UTF-16 byte-order marks and UTF-16 padding.
_BLANK_BYTES = b" \t\r\n\x00\xef\xbb\xbf\xfe\xff"


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


def read_prolog(stream: BinaryIO) -> tuple[list[bytes], str]:
    """Return the chunks read up to and including the root start tag, and that tag."""
    guard = etree.XMLParser(target=_PrologGuard(), **HARDENED_OPTIONS)
    chunks: list[bytes] = []
    total = 0
    while True:
        data = stream.read(READ_CHUNK)
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
            raise describe_syntax_error(exc, at_end=at_end, head=chunks[0][:8]) from exc
        if at_end:
            raise JUnitError("not a JUnit report: the file has no root element")
        if total > MAX_PROLOG_BYTES:
            raise JUnitError("not a JUnit report: no complete root start tag in the first 1 MiB")
