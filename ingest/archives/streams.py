"""Streams over one member: inflated ahead, held back, and capped on what really happens.

A member's stream counts the bytes it produces and the compressed bytes the inflater has
consumed, checks the member, total and ratio caps after every piece it inflates, and hands
a byte out only once the caps have been checked a couple of MiB past it, so that a bomb is
refused before its first byte reaches a parser.
"""

from __future__ import annotations

import io
from typing import IO

from ingest.archives.limits import ArchiveError, ArchiveLimits, MemberRefused, MiB, size_text
from ingest.archives.names import quote
from ingest.archives.structure import CORRUPTION_ERRORS

# Largest amount asked of zipfile at once. zipfile inflates at most this much per call, so it
# bounds both the memory one read costs and how far past a cap a member can get before the
# cap is checked; callers' read(n) at or below it pass straight through.
CHUNK = MiB
# Memory bound on the hold-back, whatever grace is configured.
_MAX_HOLD = 16 * MiB


class Tally:
    """Bytes produced so far by all members of one archive."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0


class MemberStream(io.BufferedIOBase):
    """Read-only stream over one member that enforces the caps on the bytes it produces.

    It inflates ahead of its reader and keeps the last ``ratio_grace_bytes`` + one pull of
    what it produced until the caps have been checked past them (or the member has ended and
    its CRC matched). A bomb is found at most one pull past the grace, so the parser, and the
    database behind it, never see a byte of it; a member smaller than that is checked whole
    before it is handed out. The cost is a copy of each byte and about 2 MiB of memory. (A
    bomb behind an innocent prefix is found later, within the ratio credit; what the parser
    saw of it by then is taken back by the caller like any report that fails halfway.)
    """

    def __init__(
        self,
        raw: IO[bytes],
        name: str,
        compressed_size: int,
        limits: ArchiveLimits,
        tally: Tally,
        *,
        deflated: bool,
    ) -> None:
        super().__init__()
        self._raw = raw
        self._name = name
        self._compressed_size = compressed_size
        self._limits = limits
        self._tally = tally
        self._produced = 0
        self._hold = min(limits.ratio_grace_bytes, _MAX_HOLD) + CHUNK
        self._buffer = bytearray()  # produced and checked, not handed out yet
        self._ended = False
        self._ratio_checked = deflated
        self._consumed = 0  # compressed bytes the inflater had used at the last pull
        self._excess = 0  # produced bytes beyond max_ratio x consumed, credit capped
        self._error: ArchiveError | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            # Whole member: the member cap bounds what this can accumulate.
            parts = []
            while chunk := self._take(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if size <= CHUNK:
            return self._take(size)
        parts = []
        remaining = size
        while remaining and (chunk := self._take(min(remaining, CHUNK))):
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)

    def read1(self, size: int = -1) -> bytes:
        return self._take(CHUNK if size < 0 else min(size, CHUNK))

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
            self._buffer = bytearray()
        super().close()

    def _take(self, size: int) -> bytes:
        if self.closed:
            raise ValueError("member stream is closed (streams end with their iteration step)")
        if self._error is not None:
            # Sticky: a refused member must not resume as if the rest were fine.
            raise self._error
        if size == 0:
            return b""
        buffer = self._buffer
        while not self._ended and len(buffer) < size + self._hold:
            data = self._pull()
            if data:
                buffer += data
            else:
                self._ended = True
        count = min(size, len(buffer))  # whatever the hold, once the member has ended
        with memoryview(buffer) as view:
            data = bytes(view[:count])
        del buffer[:count]
        return data

    def _pull(self) -> bytes:
        """Inflate the next piece and check every cap against what has really happened."""
        raw = self._raw
        try:
            data = raw.read(CHUNK)
        except CORRUPTION_ERRORS as exc:
            detail = str(exc) or "data ends early"  # zipfile raises a bare EOFError
            raise self._refuse(
                ArchiveError(f"member {quote(self._name)} is corrupt: {detail}")
            ) from exc
        produced = self._produced = self._produced + len(data)
        self._tally.total += len(data)
        limits = self._limits
        name = quote(self._name)
        if produced > limits.max_member_bytes:
            raise self._refuse(
                MemberRefused(
                    f"member {name} refused: it expands past {size_text(limits.max_member_bytes)}",
                    produced=produced,
                )
            )
        if self._tally.total > limits.max_total_bytes:
            raise self._refuse(
                ArchiveError(f"archive expands past {size_text(limits.max_total_bytes)}")
            )
        if self._ratio_checked:
            self._check_ratio(len(data))
        return data

    def _check_ratio(self, pulled: int) -> None:
        """Refuse the member once it has produced more than the ratio allows for what it used.

        Two checks on what the inflater has really done. The member as a whole so far:
        past ``ratio_grace_bytes``, at most ``max_ratio`` bytes per compressed byte
        consumed. And its latest stretch: data that compresses worse than the ratio earns
        credit against it, but at most ``ratio_credit_bytes``, so that a report that looks
        innocent for a while cannot buy the bomb behind it the room to inflate to the
        member cap, as the first check alone would let it (by ``max_ratio`` x its prefix).
        """
        limits = self._limits
        produced, ratio = self._produced, limits.max_ratio
        consumed = _consumed(self._raw, self._compressed_size)
        if consumed is None:
            # zipfile's internals are gone: fall back to the whole compressed size.
            consumed = max(self._compressed_size, 1)
            if produced > limits.ratio_grace_bytes and produced > ratio * consumed:
                raise self._ratio_refusal(f"compression ratio over {ratio}:1", consumed)
            return
        if produced > limits.ratio_grace_bytes and produced > ratio * consumed:
            raise self._ratio_refusal(f"compression ratio over {ratio}:1", consumed)
        excess = self._excess + pulled - ratio * (consumed - self._consumed)
        self._excess = max(excess, -limits.ratio_credit_bytes)
        self._consumed = consumed
        if excess > limits.ratio_grace_bytes:
            raise self._ratio_refusal(f"a stretch of it inflates more than {ratio}:1", consumed)

    def _ratio_refusal(self, how: str, consumed: int) -> ArchiveError:
        return self._refuse(
            MemberRefused(
                f"member {quote(self._name)} refused: {how} ({self._produced:,} bytes from "
                f"{consumed:,} compressed bytes)",
                produced=self._produced,
            )
        )

    def _refuse(self, error: ArchiveError) -> ArchiveError:
        self._error = error
        self._buffer = bytearray()
        return error


def _consumed(raw: IO[bytes], compressed_size: int) -> int | None:
    """Compressed bytes of the member that the inflater has actually used so far.

    zipfile reads the file ahead of the inflater (``_compress_left`` counts what it has not
    read yet) and zlib keeps what it could not use for the output asked of it in
    ``unconsumed_tail``; both are subtracted, or a bomb would be credited with the megabyte
    read ahead of it. These are zipfile's internals, read defensively: None when a later
    Python has renamed them (the caller then falls back to the whole compressed size, the
    cap before this one), and tests/ingest/test_archives.py fails on the bombs it then no
    longer stops early.
    """
    left = getattr(raw, "_compress_left", None)
    tail = getattr(getattr(raw, "_decompressor", None), "unconsumed_tail", None)
    if not (isinstance(left, int) and isinstance(tail, bytes)):
        return None
    return compressed_size - left - len(tail)


class RefusedStream(io.BufferedIOBase):
    """The stream of a member refused before it was opened: every read raises its refusal."""

    def __init__(self, error: MemberRefused) -> None:
        super().__init__()
        self._error = error

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("member stream is closed (streams end with their iteration step)")
        raise self._error

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)
