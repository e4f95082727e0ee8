"""The archive's structure, checked before a single member is inflated.

Everything that can be checked without inflating is: the end records and the member count
(walked, not taken from a header that can lie), each entry's flags, compression method and
file type, and the layout of the entries on disk, so that overlapping entries (Fifield's
non-recursive zip bomb) and entries running into the central directory are refused before
``zipfile`` is asked for anything.
"""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from operator import itemgetter
from typing import BinaryIO

from ingest.archives.limits import ArchiveError, ArchiveLimits
from ingest.archives.names import quote

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
CORRUPTION_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    ValueError,  # includes UnicodeDecodeError for undecodable names
    struct.error,
)


def open_checked(fh: BinaryIO, limits: ArchiveLimits) -> zipfile.ZipFile:
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
    except CORRUPTION_ERRORS as exc:
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
    name = quote(info.filename)
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
                f"member {quote(info.filename)} has no local header at offset {start} "
                "(truncated or corrupt archive)"
            )
        local = _LOCAL_HEADER.unpack(header)
        flags, name_len, extra_len = local[3], local[10], local[11]
        if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
            raise ArchiveError(f"encrypted member {quote(info.filename)} refused")
        # Mirrors zipfile.open(): it would refuse this member later, we refuse it now.
        raw_name = fh.read(name_len)
        try:
            local_name = raw_name.decode("utf-8" if flags & _FLAG_UTF8_NAME else "cp437")
        except UnicodeDecodeError:
            local_name = None
        if local_name != info.orig_filename:
            raise ArchiveError(
                f"member {quote(info.filename)} has a different name in its local header"
            )
        end = start + _LOCAL_HEADER.size + name_len + extra_len + info.compress_size
        if end > cd_start:
            raise ArchiveError(
                f"member {quote(info.filename)} runs past the central directory at offset "
                f"{cd_start} (zip bomb or truncated archive)"
            )
        spans.append((start, end, info))

    spans.sort(key=itemgetter(0))
    reach, owner = -1, None
    for start, end, info in spans:
        if owner is not None and start < reach:
            raise ArchiveError(
                f"overlapping entries at offset {start}: {quote(owner.filename)} and "
                f"{quote(info.filename)} (zip bomb)"
            )
        if end > reach:
            reach, owner = end, info
