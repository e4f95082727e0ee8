"""Safe reading of GitHub Actions artifact ZIPs: the only place that opens an archive.

An artifact is untrusted input, so this package refuses an archive as a whole (``ArchiveError``)
when its structure is hostile or broken -- too many members, overlapping entries (David
Fifield's non-recursive zip bomb, which Python 3.11.7's ``zipfile`` reads without complaint),
symlinks, encryption, compression methods we cannot bound, more bytes in all than the total
cap -- and refuses one member alone (``MemberRefused``) when only that member is at fault: a
name no archiver should write (``..``, absolute, drive letters, control characters), a
compression ratio past the cap, more bytes than the member cap. Each JUnit member is streamed
straight from the file on disk through a wrapper that counts the bytes actually produced and
the compressed bytes actually consumed, because every size an archive declares can lie, and
that holds back the last couple of MiB it produced until they pass the caps, so that a bomb is
refused before its first byte reaches a parser. Nothing is ever extracted and a member's name
is only ever text. Pure Python with no Django, so it serves the ingest service and the CLI
alike, and takes its limits as an argument. Import from here: ``limits`` holds the caps and
the refusals, ``names`` what a member's name says, ``structure`` the checks made before
anything is inflated, ``streams`` the reading of one member.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from ingest.archives.limits import DEFAULT_LIMITS, ArchiveError, ArchiveLimits, MemberRefused
from ingest.archives.names import escape, is_junit_member, quote, unsafe_name_reason
from ingest.archives.streams import MemberStream, RefusedStream, Tally
from ingest.archives.structure import CORRUPTION_ERRORS, open_checked

__all__ = [
    "DEFAULT_LIMITS",
    "ArchiveError",
    "ArchiveLimits",
    "ArchiveMember",
    "MemberRefused",
    "is_junit_member",
    "iter_junit_members",
    "unsafe_name_reason",
]


@dataclass(frozen=True)
class ArchiveMember:
    """One member as listed by the archive."""

    # The member's path inside the archive, as text (control characters escaped); NEVER used
    # as a file-system path.
    name: str
    compressed_size: int
    declared_size: int  # what the header claims; informative only


def iter_junit_members(
    path: str | os.PathLike[str], *, limits: ArchiveLimits = DEFAULT_LIMITS
) -> Iterator[tuple[ArchiveMember, BinaryIO]]:
    """Validate the archive's structure, then yield each JUnit member with a stream over it.

    Structural problems raise ArchiveError before the first member is yielded. Each stream
    reads the member's decompressed bytes from the file on disk; its read() raises
    MemberRefused when the member passes its own caps (the iteration may go on to the next
    member), and ArchiveError when the archive passes the total cap or the data turns out
    corrupt. A member with an unsafe name is yielded unopened, with a stream whose first
    read() raises MemberRefused, so the caller records it beside the others. Non-XML members,
    nested archives included, are skipped without being opened. A stream is closed, and must
    not be used, once the iteration moves on.
    """
    with open(path, "rb") as fh:
        archive = open_checked(fh, limits)
        with archive:
            produced = Tally()
            for info in archive.infolist():
                # zipfile cuts ``filename`` at a NUL; orig_filename is what the archive says.
                raw_name = info.orig_filename
                if info.is_dir() or not (
                    is_junit_member(info.filename) or is_junit_member(raw_name)
                ):
                    continue
                stream: io.BufferedIOBase
                problem = unsafe_name_reason(raw_name)
                if problem is not None:
                    member = ArchiveMember(escape(raw_name), info.compress_size, info.file_size)
                    refusal = MemberRefused(f"member {quote(raw_name)} refused: {problem}")
                    stream = RefusedStream(refusal)
                else:
                    member = ArchiveMember(info.filename, info.compress_size, info.file_size)
                    try:
                        raw = archive.open(info)
                    except CORRUPTION_ERRORS as exc:
                        raise ArchiveError(
                            f"member {quote(member.name)} is corrupt: {exc}"
                        ) from exc
                    # Only deflate can expand; a stored member produces what it consumes.
                    deflated = info.compress_type == zipfile.ZIP_DEFLATED
                    stream = MemberStream(
                        raw, member.name, info.compress_size, limits, produced, deflated=deflated
                    )
                try:
                    yield member, cast(BinaryIO, stream)
                finally:
                    stream.close()
