"""Safe reading of GitHub Actions artifact ZIPs: the only place that opens an archive.

An artifact is untrusted input, so this module refuses an archive as a whole (``ArchiveError``)
when its structure is hostile or broken -- too many members, overlapping entries (David
Fifield's non-recursive zip bomb, which Python 3.11.7's ``zipfile`` reads without complaint),
symlinks, encryption, compression methods we cannot bound -- before handing anything out, and
then streams each JUnit member straight from the file on disk through a wrapper that counts
the bytes actually produced, because every size an archive declares can lie. Nothing is ever
extracted and a member's name is only ever text. Pure Python with no Django, so it serves the
ingest service and the CLI alike, and takes its limits as an argument.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from operator import itemgetter
from typing import BinaryIO, cast

__all__ = [
    "DEFAULT_LIMITS",
    "ArchiveError",
    "ArchiveLimits",
    "ArchiveMember",
    "is_junit_member",
    "iter_junit_members",
]

_MiB = 1 << 20
# Largest amount asked of zipfile at once. zipfile inflates at most this much per call, so it
# bounds both the memory one read costs and how far past a cap a member can get before the
# cap is checked; callers' read(n) at or below it pass straight through.
_CHUNK = _MiB

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_HEADER_SIZE = 46
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_MAX_COMMENT = 0xFFFF

_FLAG_ENCRYPTED = 1 << 0
_FLAG_COMPRESSED_PATCH = 1 << 5
_FLAG_STRONG_ENCRYPTION = 1 << 6
_FLAG_UTF8_NAME = 1 << 11
# Only methods whose decompressor zipfile drives with an output bound: it inflates deflate
# data at most n bytes per read(n), but hands bzip2/LZMA whole input chunks and takes all
# their output at once, so a few KiB of input could become gigabytes inside one read().
_SUPPORTED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})

# Errors zipfile raises for malformed input, as opposed to OSError from the disk itself.
_CORRUPTION_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    ValueError,  # includes UnicodeDecodeError for undecodable names
    struct.error,
)


class ArchiveError(ValueError):
    """The archive is refused as a whole; the message says why in words a user can act on."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on one archive. Byte caps count bytes actually produced, never declared sizes."""

    max_members: int = 10_000
    max_member_bytes: int = 1 << 30  # uncompressed bytes produced by one member
    max_total_bytes: int = 4 << 30  # uncompressed bytes produced by the whole archive
    max_ratio: int = 200  # produced bytes / compressed bytes of a member
    # The ratio is only enforced past this many produced bytes: tiny XML files compress far
    # beyond any sane ratio, and a bomb has to get well past this to do harm.
    ratio_grace_bytes: int = _MiB

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            least = 0 if field.name == "ratio_grace_bytes" else 1
            if not isinstance(value, int) or value < least:
                raise ValueError(f"ArchiveLimits.{field.name} must be an int >= {least}")


DEFAULT_LIMITS = ArchiveLimits()


@dataclass(frozen=True)
class ArchiveMember:
    """One member as listed by the archive."""

    name: str  # the member's path inside the archive, as text; NEVER used as a file-system path
    compressed_size: int
    declared_size: int  # what the header claims; informative only


def is_junit_member(name: str) -> bool:
    """Whether a member name looks like a JUnit report worth parsing.

    True for names ending in ``.xml`` (any case), except directories and the metadata macOS
    Archive Utility adds (``__MACOSX/`` trees and ``._name.xml`` AppleDouble files), which
    end in ``.xml`` but hold resource forks, not XML.
    """
    path = name.replace("\\", "/")  # archives made on Windows may use either separator
    if path.endswith("/") or not path.lower().endswith(".xml"):
        return False
    *folders, base = path.split("/")
    return "__MACOSX" not in folders and not base.startswith("._")


def iter_junit_members(
    path: str | os.PathLike[str], *, limits: ArchiveLimits = DEFAULT_LIMITS
) -> Iterator[tuple[ArchiveMember, BinaryIO]]:
    """Validate the archive's structure, then yield each JUnit member with a stream over it.

    Structural problems raise ArchiveError before the first member is yielded. Each stream
    reads the member's decompressed bytes from the file on disk and raises ArchiveError from
    read() when a cap is exceeded or the data turns out corrupt. Non-XML members, nested
    archives included, are skipped without being opened. A stream is closed, and must not be
    used, once the iteration moves on.
    """
    with open(path, "rb") as fh:
        archive = _open_checked(fh, limits)
        with archive:
            produced = _Tally()
            for info in archive.infolist():
                if info.is_dir() or not is_junit_member(info.filename):
                    continue
                member = ArchiveMember(info.filename, info.compress_size, info.file_size)
                try:
                    raw = archive.open(info)
                except _CORRUPTION_ERRORS as exc:
                    raise ArchiveError(f"member {_quote(member.name)} is corrupt: {exc}") from exc
                stream = _MemberStream(raw, member, limits, produced)
                try:
                    yield member, cast(BinaryIO, stream)
                finally:
                    stream.close()


class _Tally:
    """Bytes produced so far by all members of one archive."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0


class _MemberStream(io.BufferedIOBase):
    """Read-only stream over one member that enforces the caps on the bytes it produces."""

    def __init__(
        self,
        raw: zipfile.ZipExtFile,
        member: ArchiveMember,
        limits: ArchiveLimits,
        tally: _Tally,
    ) -> None:
        super().__init__()
        self._raw = raw
        self._member = member
        self._limits = limits
        self._tally = tally
        self._produced = 0
        # max(…, 1): a member claiming zero compressed bytes still gets a cap above zero.
        self._ratio_cap = limits.max_ratio * max(member.compressed_size, 1)
        self._error: ArchiveError | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            # Whole member: the member cap bounds what this can accumulate.
            parts = []
            while chunk := self._read_chunk(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if size <= _CHUNK:
            return self._read_chunk(size)
        parts = []
        remaining = size
        while remaining and (chunk := self._read_chunk(min(remaining, _CHUNK))):
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)

    def read1(self, size: int = -1) -> bytes:
        return self._read_chunk(_CHUNK if size < 0 else min(size, _CHUNK))

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()

    def _read_chunk(self, size: int) -> bytes:
        if self.closed:
            raise ValueError("member stream is closed (streams end with their iteration step)")
        if self._error is not None:
            # Sticky: a refused member must not resume as if the rest were fine.
            raise self._error
        try:
            data = self._raw.read(size)
        except _CORRUPTION_ERRORS as exc:
            detail = str(exc) or "data ends early"  # zipfile raises a bare EOFError
            raise self._refuse(f"member {_quote(self._member.name)} is corrupt: {detail}") from exc
        self._produced += len(data)
        self._tally.total += len(data)
        limits = self._limits
        if self._produced > limits.max_member_bytes:
            raise self._refuse(
                f"member {_quote(self._member.name)} expands past {_size(limits.max_member_bytes)}"
            )
        if self._tally.total > limits.max_total_bytes:
            raise self._refuse(f"archive expands past {_size(limits.max_total_bytes)}")
        if self._produced > self._ratio_cap and self._produced > limits.ratio_grace_bytes:
            raise self._refuse(
                f"compression ratio of {_quote(self._member.name)} exceeds {limits.max_ratio}:1"
            )
        return data

    def _refuse(self, message: str) -> ArchiveError:
        self._error = ArchiveError(message)
        return self._error


def _open_checked(fh: BinaryIO, limits: ArchiveLimits) -> zipfile.ZipFile:
    """Open the archive only after checking everything that can be checked without inflating."""
    fh.seek(0, io.SEEK_END)
    file_size = fh.tell()
    declared_members, cd_start, cd_size = _read_end_record(fh, file_size)
    if declared_members > limits.max_members:
        raise ArchiveError(f"archive has {declared_members} members (limit {limits.max_members})")
    # zipfile builds a ZipInfo for every central directory entry before we could look at
    # them, and the declared count above can lie; walk the headers first so a directory of
    # millions of tiny entries costs a counter, not gigabytes of objects.
    _count_entries(fh, cd_start, cd_size, limits.max_members)
    try:
        archive = zipfile.ZipFile(fh)
    except _CORRUPTION_ERRORS as exc:
        raise ArchiveError(f"corrupt ZIP central directory: {exc}") from exc
    try:
        infos = archive.infolist()
        for info in infos:
            _check_entry(info)
        _check_layout(fh, infos, cd_start)
    except BaseException:
        archive.close()
        raise
    return archive


def _read_end_record(fh: BinaryIO, file_size: int) -> tuple[int, int, int]:
    """Find the end of central directory the way zipfile does; return (count, start, size)."""
    tail_start = max(file_size - _EOCD.size - _MAX_COMMENT, 0)
    fh.seek(tail_start)
    tail = fh.read()
    # zipfile first takes a comment-less record ending the file, then searches backwards.
    at = len(tail) - _EOCD.size
    if at < 0 or not (tail.startswith(b"PK\x05\x06", at) and tail.endswith(b"\0\0")):
        at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise ArchiveError("not a ZIP archive (no end of central directory; truncated?)")
    _, _, _, _, count, cd_size, _, _ = _EOCD.unpack_from(tail, at)
    location = tail_start + at
    # Like zipfile, trust the central directory to sit right before the end records, which
    # also copes with data prepended to the archive.
    cd_end = location
    if location >= _EOCD64_LOCATOR.size + _EOCD64.size:
        fh.seek(location - _EOCD64_LOCATOR.size - _EOCD64.size)
        records = fh.read(_EOCD64.size + _EOCD64_LOCATOR.size)
        locator = _EOCD64_LOCATOR.unpack_from(records, _EOCD64.size)
        if locator[0] == b"PK\x06\x07":
            if locator[1] != 0 or locator[3] > 1:
                raise ArchiveError("multi-disk ZIP archives are not supported")
            record = _EOCD64.unpack_from(records)
            if record[0] == b"PK\x06\x06":
                count, cd_size = record[7], record[8]
                cd_end = location - _EOCD64_LOCATOR.size - _EOCD64.size
    cd_start = cd_end - cd_size
    if cd_start < 0:
        raise ArchiveError("corrupt ZIP central directory (bad size or offset)")
    return count, cd_start, cd_size


def _count_entries(fh: BinaryIO, cd_start: int, cd_size: int, max_members: int) -> None:
    fh.seek(cd_start)
    count = walked = 0
    while walked < cd_size:
        header = fh.read(_CENTRAL_HEADER_SIZE)
        if len(header) != _CENTRAL_HEADER_SIZE or header[:4] != b"PK\x01\x02":
            raise ArchiveError(f"corrupt ZIP central directory at offset {cd_start + walked}")
        count += 1
        if count > max_members:
            raise ArchiveError(f"archive has more than {max_members} members (limit {max_members})")
        variable = sum(struct.unpack_from("<3H", header, 28))  # name, extra, comment
        fh.seek(variable, io.SEEK_CUR)
        walked += _CENTRAL_HEADER_SIZE + variable


def _check_entry(info: zipfile.ZipInfo) -> None:
    name = _quote(info.filename)
    if info.flag_bits & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
        raise ArchiveError(f"encrypted member {name} refused")
    # Checked whatever system made the archive: high bits of external_attr only ever carry a
    # unix mode, and a symlink in an artifact is either a mistake or an attack.
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ArchiveError(f"symlink member {name} refused")
    if info.compress_type not in _SUPPORTED_METHODS:
        raise ArchiveError(
            f"member {name} uses unsupported compression method {info.compress_type}"
        )
    if info.flag_bits & _FLAG_COMPRESSED_PATCH:
        raise ArchiveError(f"member {name} holds patch data, which is not supported")


def _check_layout(fh: BinaryIO, infos: list[zipfile.ZipInfo], cd_start: int) -> None:
    """Refuse entries whose bytes overlap each other or run into the central directory.

    In an honest archive every entry owns a disjoint span (local header, then its compressed
    data) before the central directory. Fifield's bomb makes many entries share one highly
    compressed kernel, so a small file inflates each time per entry; Python 3.11.7's
    zipfile checks none of this, so we read each local header and compare the spans.
    """
    spans = []
    for info in infos:
        start = info.header_offset
        header = b""
        if start >= 0:
            fh.seek(start)
            header = fh.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise ArchiveError(
                f"member {_quote(info.filename)} has no local header at offset {start} "
                "(truncated or corrupt archive)"
            )
        local = _LOCAL_HEADER.unpack(header)
        flags, name_len, extra_len = local[3], local[10], local[11]
        if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
            raise ArchiveError(f"encrypted member {_quote(info.filename)} refused")
        # Mirrors zipfile.open(): it would refuse this member later, we refuse it now.
        raw_name = fh.read(name_len)
        try:
            local_name = raw_name.decode("utf-8" if flags & _FLAG_UTF8_NAME else "cp437")
        except UnicodeDecodeError:
            local_name = None
        if local_name != info.orig_filename:
            raise ArchiveError(
                f"member {_quote(info.filename)} has a different name in its local header"
            )
        end = start + _LOCAL_HEADER.size + name_len + extra_len + info.compress_size
        if end > cd_start:
            raise ArchiveError(
                f"member {_quote(info.filename)} runs past the central directory at offset "
                f"{cd_start} (zip bomb or truncated archive)"
            )
        spans.append((start, end, info))

    spans.sort(key=itemgetter(0))
    reach, owner = -1, None
    for start, end, info in spans:
        if owner is not None and start < reach:
            raise ArchiveError(
                f"overlapping entries at offset {start}: {_quote(owner.filename)} and "
                f"{_quote(info.filename)} (zip bomb)"
            )
        if end > reach:
            reach, owner = end, info


def _quote(name: str) -> str:
    """Quote a member name for a message: escaped, so hostile names cannot forge log lines."""
    if len(name) > 200:
        name = name[:200] + "…"
    return json.dumps(name, ensure_ascii=False)


def _size(n: int) -> str:
    return f"{n // _MiB} MiB" if n % _MiB == 0 else f"{n} bytes"
