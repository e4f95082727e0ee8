"""Tests for ingest.archives: normal artifacts, and one test per kind of hostile archive.

Every archive is built in tmp_path while the test runs. Hostile archives are written byte
by byte (the helpers below), because zipfile will not write lies; they stay small on disk
however much they would inflate to, and are built a compressed segment at a time, so the
tests hold a few MiB whatever the bomb inflates to.
"""

from __future__ import annotations

import io
import random
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psutil
import pytest

from ingest.archives import (
    ArchiveError,
    ArchiveLimits,
    ArchiveMember,
    MemberRefused,
    is_junit_member,
    iter_junit_members,
    unsafe_name_reason,
)
from ingest.junit import JUnitError

MiB = 1 << 20
JUNIT = b'<?xml version="1.0"?><testsuite name="s"><testcase name="t"/></testsuite>'


# --- building archives -------------------------------------------------------------------


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, as ZIP stores it
    return compressor.compress(data) + compressor.flush()


def local_header(
    name: bytes, *, method: int, crc: int, csize: int, usize: int, flags: int = 0
) -> bytes:
    fixed = struct.pack(
        "<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, flags, method, 0, 0x21, crc, csize, usize,
        len(name), 0,
    )  # fmt: skip
    return fixed + name


def central_header(
    name: bytes,
    *,
    method: int,
    crc: int,
    csize: int,
    usize: int,
    offset: int,
    flags: int = 0,
    external_attr: int = 0,
) -> bytes:
    fixed = struct.pack(
        "<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, flags, method, 0, 0x21, crc, csize,
        usize, len(name), 0, 0, 0, 0, external_attr, offset,
    )  # fmt: skip
    return fixed + name


def end_record(count: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)


@dataclass
class Entry:
    """One member of a hand-built archive; every field can lie."""

    name: str
    plain: bytes = JUNIT
    method: int = zipfile.ZIP_DEFLATED
    flags: int = 0
    external_attr: int = 0
    crc: int | None = None  # default: the true CRC of plain
    usize: int | None = None  # default: the true len(plain)
    payload: bytes | None = None  # default: plain, compressed with method


def craft_zip(path: Path, entries: Iterable[Entry], *, declared_count: int | None = None) -> Path:
    body, directory, count = bytearray(), bytearray(), 0
    for entry in entries:
        name = entry.name.encode()
        payload = entry.payload
        if payload is None:
            stored = entry.method == zipfile.ZIP_STORED
            payload = entry.plain if stored else deflate(entry.plain)
        fields = {
            "method": entry.method,
            "crc": zlib.crc32(entry.plain) if entry.crc is None else entry.crc,
            "csize": len(payload),
            "usize": len(entry.plain) if entry.usize is None else entry.usize,
            "flags": entry.flags,
        }
        directory += central_header(
            name, offset=len(body), external_attr=entry.external_attr, **fields
        )
        body += local_header(name, **fields) + payload
        count += 1
    count = count if declared_count is None else declared_count
    path.write_bytes(bytes(body + directory + end_record(count, len(directory), len(body))))
    return path


def quoted_overlap_bomb(path: Path, *, files: int, kernel_size: int) -> Path:
    """David Fifield's non-recursive zip bomb ("quoted overlap", WOOT 2019).

    One deflated kernel of zeros sits at the end of the file. Every entry's compressed data
    runs to the end of that kernel: entry i begins with a stored (uncompressed) deflate block
    that quotes entry i+1's local header, so its data flows through all later headers into
    the shared kernel. Each entry inflates to the whole kernel, with correct CRCs and sizes,
    so an unsuspecting reader produces files * kernel_size bytes from a small file.
    """
    kernel = deflate(bytes(kernel_size))
    names = [f"reports/{i:05d}.xml".encode() for i in range(files)]
    headers: list[bytes] = [b""] * files
    csizes, usizes, crcs = [0] * files, [0] * files, [0] * files
    quoted = b""  # the local headers that entry i quotes, in order
    zeros_crc = zlib.crc32(bytes(kernel_size))
    for i in reversed(range(files)):
        if i < files - 1:
            quoted = headers[i + 1] + quoted
            csizes[i] = 5 + len(headers[i + 1]) + csizes[i + 1]
        else:
            csizes[i] = len(kernel)
        usizes[i] = len(quoted) + kernel_size
        crcs[i] = zlib.crc32(bytes(kernel_size), zlib.crc32(quoted)) if quoted else zeros_crc
        headers[i] = local_header(
            names[i], method=zipfile.ZIP_DEFLATED, crc=crcs[i], csize=csizes[i], usize=usizes[i]
        )
    body, offsets = bytearray(), []
    for i in range(files):
        offsets.append(len(body))
        body += headers[i]
        if i < files - 1:
            size = len(headers[i + 1])  # non-final stored block: 0x00, LEN, NLEN
            body += b"\x00" + struct.pack("<HH", size, size ^ 0xFFFF)
    body += kernel
    directory = b"".join(
        central_header(
            names[i], method=8, crc=crcs[i], csize=csizes[i], usize=usizes[i], offset=offsets[i]
        )
        for i in range(files)
    )
    path.write_bytes(bytes(body) + directory + end_record(files, len(directory), len(body)))
    return path


def zeros_bomb(path: Path, *, size: int, name: str = "bomb.xml") -> Path:
    """One member that inflates to `size` zero bytes from about size/1000 compressed bytes.

    Compressing gigabytes would make the test slow, so one MiB is compressed once and its
    output repeated: after a full flush deflate output refers to nothing before it, so the
    segments concatenate into one valid stream, closed by an empty final block.
    """
    assert size % MiB == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    payload = segment * (size // MiB) + b"\x03\x00"
    crc = 0
    chunk = bytes(MiB)
    for _ in range(size // MiB):
        crc = zlib.crc32(chunk, crc)
    return craft_zip(path, [Entry(name, plain=b"", payload=payload, crc=crc, usize=size)])


BOMB_CASE = b'    <testcase classname="bomb.Boom" name="test_boom" time="0.001"/>\n'


def junit_bomb_entry(
    name: str = "reports/bomb.xml", *, mib: int = 512, padding: int = 3 * MiB, prefix: int = 0
) -> Entry:
    """A JUnit report of `mib` MiB of <testcase> lines that is a few MB compressed.

    The report is valid XML with a true CRC and true sizes, so zipfile reads it whole. Its
    body compresses about 1000:1, one 1 MiB segment compressed once and repeated (see
    zeros_bomb); `padding` random bytes after the end of the deflate stream, which every
    inflater ignores, make the member's compressed size a few MB: the ratio of the sizes it
    declares stays under 200:1, so only a ratio measured on the bytes actually consumed
    stops it early (the old cap, 200 x the compressed size, let all of it through).
    `prefix` bytes of random hex in a comment, which compress about 2:1, come first: a
    member that looks innocent for a while.
    """
    noise = random.Random(2).randbytes(prefix // 2).hex().encode()
    head = b'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="bomb">\n'
    head += b"<!--" + noise + b"-->\n" if prefix else b""
    tail = b"</testsuite>\n"
    segment = BOMB_CASE * (MiB // len(BOMB_CASE))

    def part(data: bytes, mode: int) -> bytes:
        compressor = zlib.compressobj(9 if len(data) <= MiB else 1, zlib.DEFLATED, -15)
        return compressor.compress(data) + compressor.flush(mode)

    crc = zlib.crc32(head)
    for _ in range(mib):
        crc = zlib.crc32(segment, crc)
    crc = zlib.crc32(tail, crc)
    body = part(segment, zlib.Z_FULL_FLUSH) * mib
    payload = part(head, zlib.Z_FULL_FLUSH) + body + part(tail, zlib.Z_FINISH)
    payload += random.Random(1).randbytes(padding)
    size = len(head) + mib * len(segment) + len(tail)
    return Entry(name, plain=b"", payload=payload, crc=crc, usize=size)


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


def read_members(path: Path, **kwargs: object) -> dict[str, bytes]:
    return {member.name: stream.read() for member, stream in iter_junit_members(path, **kwargs)}


def drain(stream: BinaryIO, chunk: int = 256 * 1024) -> int:
    total = 0
    while data := stream.read(chunk):
        total += len(data)
    return total


# --- normal artifacts ----------------------------------------------------------------------


def test_artifact_yields_exactly_the_junit_members_with_their_bytes(tmp_path: Path) -> None:
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w") as inner:
        inner.writestr("hidden.xml", JUNIT)
    path = tmp_path / "artifact.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("test-results/", b"")
        zf.writestr("test-results/unit/TEST-a.xml", JUNIT + b"<!-- a -->")
        zf.writestr("test-results/integration/TEST-b.XML", JUNIT + b"<!-- b -->")
        zf.writestr("top.xml", JUNIT, compress_type=zipfile.ZIP_STORED)
        zf.writestr("logs/output.txt", b"plain text")
        zf.writestr("nested/more-results.zip", nested.getvalue())
        zf.writestr("__MACOSX/test-results/._TEST-a.xml", b"\x00\x05\x16\x07")

    seen = [(member, stream.read()) for member, stream in iter_junit_members(path)]

    assert [(m.name, data) for m, data in seen] == [
        ("test-results/unit/TEST-a.xml", JUNIT + b"<!-- a -->"),
        ("test-results/integration/TEST-b.XML", JUNIT + b"<!-- b -->"),
        ("top.xml", JUNIT),
    ]
    top = seen[2][0]
    assert top == ArchiveMember("top.xml", compressed_size=len(JUNIT), declared_size=len(JUNIT))


def test_streamed_archive_with_data_descriptors_is_read(tmp_path: Path) -> None:
    # upload-artifact streams its ZIPs, so sizes live in data descriptors and the central
    # directory, not in the local headers; zipfile writes the same when it cannot seek.
    class Unseekable:
        def __init__(self, raw: io.BufferedWriter) -> None:
            self.raw = raw

        def write(self, data: bytes) -> int:
            return self.raw.write(data)

        def flush(self) -> None:
            self.raw.flush()

    path = tmp_path / "streamed.zip"
    with path.open("wb") as raw, zipfile.ZipFile(Unseekable(raw), "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            with zf.open(f"r/{i}.xml", "w") as out:
                out.write(JUNIT * (i + 1))
    assert zipfile.ZipFile(path).infolist()[0].flag_bits & 0x08  # really data descriptors

    assert read_members(path) == {f"r/{i}.xml": JUNIT * (i + 1) for i in range(3)}


def test_stream_supports_sized_reads_and_lxml(tmp_path: Path) -> None:
    etree = pytest.importorskip("lxml.etree")
    rng = random.Random(0)
    cases = "".join(
        f'<testcase name="test_{rng.getrandbits(32):x}" time="{rng.random():.4f}"/>'
        for _ in range(100_000)
    )
    big = f"<testsuite>{cases}</testsuite>".encode()  # ~5 MiB, compresses like real reports
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.xml", big)
        zf.writestr("small.xml", JUNIT)

    members = iter_junit_members(path)
    _, stream = next(members)
    pieces = [
        stream.read(1),
        stream.read(0),
        stream.read(3 * MiB + 7),
        stream.read(),
        stream.read(5),
    ]
    assert b"".join(pieces) == big and pieces[-1] == b"" and len(pieces[2]) == 3 * MiB + 7

    _, stream = next(members)
    buffer = bytearray(len(JUNIT) + 10)
    assert stream.readinto(buffer) == len(JUNIT)
    assert bytes(buffer[: len(JUNIT)]) == JUNIT

    for _, stream in iter_junit_members(path):
        assert etree.parse(stream).getroot().tag == "testsuite"


def test_stream_is_closed_when_iteration_moves_on(tmp_path: Path) -> None:
    path = craft_zip(tmp_path / "a.zip", [Entry("a.xml"), Entry("b.xml")])
    members = iter_junit_members(path)
    _, first = next(members)
    next(members)
    with pytest.raises(ValueError, match="closed"):
        first.read()
    members.close()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("TEST-a.xml", True),
        ("dir/sub/TEST-a.XML", True),
        ("dir\\windows\\TEST-a.xml", True),
        ("../../etc/passwd.xml", True),  # looks like a report: then refused for its name
        ("results.xml/", False),
        ("dir/", False),
        ("notes.txt", False),
        ("report.xml.gz", False),
        ("nested.zip", False),
        ("reports.jar", False),
        ("xml", False),
        ("__MACOSX/dir/TEST-a.xml", False),
        ("dir/__MACOSX/TEST-a.xml", False),
        ("dir/._TEST-a.xml", False),
        ("._TEST-a.xml", False),
    ],
)
def test_is_junit_member(name: str, expected: bool) -> None:
    assert is_junit_member(name) is expected


def test_non_junit_members_are_never_opened(tmp_path: Path) -> None:
    # If these were read, their bad CRCs would raise; they are skipped unread.
    path = craft_zip(
        tmp_path / "a.zip",
        [
            Entry("nested.zip", plain=b"PK\x03\x04garbage", crc=1),
            Entry("log.txt", plain=b"x" * 5000, crc=1),
            Entry("TEST.xml"),
        ],
    )
    assert read_members(path) == {"TEST.xml": JUNIT}


UNSAFE_NAMES = [
    ("../../etc/passwd.xml", "climbs out of the archive"),
    ("a/../../up.xml", "climbs out of the archive"),
    ("..\\windows\\up.xml", "climbs out of the archive"),
    ("/etc/absolute.xml", "absolute path"),
    ("\\\\server\\share\\unc.xml", "absolute path"),
    ("C:\\Windows\\drive.xml", "names a drive"),
    ("C:/Windows/drive.xml", "names a drive"),
    ("c:drive-relative.xml", "names a drive"),
    ("report.xml\x00.sh", "control characters"),
    ("reports/\x1b[2Jcleared.xml", "control characters"),
    ("line\nbreak.xml", "control characters"),
    ("del\x7f.xml", "control characters"),
    ("trojan\u202elmx.xml", "control characters"),
]


@pytest.mark.parametrize(("name", "reason"), UNSAFE_NAMES)
def test_unsafe_name_reason(name: str, reason: str) -> None:
    assert reason in (unsafe_name_reason(name) or "")


@pytest.mark.parametrize(
    "name",
    ["TEST-a.xml", "dir/sub/TEST-a.xml", "dir\\win\\a.xml", "./a.xml", "a..b.xml", "テスト.xml"],
)
def test_ordinary_names_are_safe(name: str) -> None:
    assert unsafe_name_reason(name) is None


def test_unsafe_names_are_refused_alone_with_their_name_quoted_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Crafted, because zipfile itself would cut the NUL name short when writing it.
    names = [name for name, _ in UNSAFE_NAMES]
    (tmp_path / "in").mkdir()
    archive = craft_zip(
        tmp_path / "in" / "evil.zip",
        [
            Entry("good/first.xml"),
            *(Entry(name, flags=0 if name.isascii() else 0x800) for name in names),
            Entry("good/last.xml"),
        ],
    )
    cwd = tmp_path / "work" / "deep"  # "../../etc" from here lands inside tmp_path
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    before = snapshot(tmp_path)

    read, refused = {}, {}
    for member, stream in iter_junit_members(archive):
        try:
            read[member.name] = stream.read()
        except MemberRefused as exc:
            refused[member.name] = str(exc)

    assert read == {"good/first.xml": JUNIT, "good/last.xml": JUNIT}
    assert len(refused) == len(names)
    for shown, message in refused.items():
        # Names as text, with anything that could rewrite a terminal line escaped.
        assert shown.isprintable() and message.isprintable()
        assert message.startswith("member ") and " refused: it " in message
    assert refused["line\\u000abreak.xml"].startswith('member "line\\nbreak.xml" refused')
    assert refused["report.xml\\u0000.sh"] == (
        'member "report.xml\\u0000.sh" refused: it holds control characters'
    )
    assert refused["trojan\\u202elmx.xml"].startswith('member "trojan\\u202elmx.xml" refused')
    assert refused["../../etc/passwd.xml"] == (
        "member \"../../etc/passwd.xml\" refused: it climbs out of the archive with '..'"
    )
    assert snapshot(tmp_path) == before


def test_refusal_of_a_member_is_also_a_report_error() -> None:
    # What lets the store and parse_junit record it against the member and read on.
    assert issubclass(MemberRefused, JUnitError) and issubclass(MemberRefused, ArchiveError)


# --- structure refused before anything is yielded ---------------------------------------------


def refused_up_front(path: Path, **kwargs: object) -> str:
    members = iter_junit_members(path, **kwargs)
    with pytest.raises(ArchiveError) as info:
        next(members)
    return str(info.value)


@pytest.mark.timeout(60)
def test_quoted_overlap_bomb_is_refused_before_yielding(tmp_path: Path) -> None:
    path = quoted_overlap_bomb(tmp_path / "bomb.zip", files=2000, kernel_size=256 * 1024)
    assert path.stat().st_size < 300 * 1024  # ~500 MiB of output if read naively
    process = psutil.Process()
    rss_before = process.memory_info().rss

    message = refused_up_front(path)

    assert "overlapping entries at offset" in message and "(zip bomb)" in message
    assert process.memory_info().rss - rss_before < 100 * MiB


@pytest.mark.timeout(60)
@pytest.mark.skipif(
    "_end_offset" in getattr(zipfile.ZipInfo, "__slots__", ()),
    reason="this Python's zipfile has its own overlapped-entry check (gh-109858)",
)
def test_stdlib_zipfile_inflates_the_quoted_overlap_bomb(tmp_path: Path) -> None:
    # Why archives.py checks overlaps itself: Python 3.11.7's zipfile reads every entry of
    # the bomb in full, CRCs and all, so the bomb is real and nothing below us stops it.
    files, kernel_size = 64, MiB
    path = quoted_overlap_bomb(tmp_path / "bomb.zip", files=files, kernel_size=kernel_size)
    produced = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            with zf.open(info) as member:
                produced += drain(member, MiB)  # raises BadZipFile on a CRC mismatch
    assert produced > files * kernel_size > 1000 * path.stat().st_size


def test_fully_overlapped_entries_are_refused(tmp_path: Path) -> None:
    # Fifield's simpler variant: every central directory entry names the same local file.
    name, payload = b"same.xml", deflate(bytes(MiB))
    fields = {"method": 8, "crc": zlib.crc32(bytes(MiB)), "csize": len(payload), "usize": MiB}
    body = local_header(name, **fields) + payload
    directory = central_header(name, offset=0, **fields) * 500
    path = tmp_path / "same.zip"
    path.write_bytes(body + directory + end_record(500, len(directory), len(body)))

    assert "overlapping entries at offset 0" in refused_up_front(path)


def test_entry_running_into_the_central_directory_is_refused(tmp_path: Path) -> None:
    path = craft_zip(tmp_path / "a.zip", [Entry("a.xml")])
    data = bytearray(path.read_bytes())
    cd_at = data.find(b"PK\x01\x02")
    struct.pack_into("<L", data, cd_at + 20, 10_000)  # compressed size past the end
    path.write_bytes(data)

    assert "runs past the central directory" in refused_up_front(path)


def test_too_many_members_is_refused(tmp_path: Path) -> None:
    path = craft_zip(tmp_path / "a.zip", [Entry(f"{i}.xml") for i in range(6)])

    message = refused_up_front(path, limits=ArchiveLimits(max_members=5))

    assert message == "archive has 6 members (limit 5)"
    assert read_members(path, limits=ArchiveLimits(max_members=6)).keys() == {
        f"{i}.xml" for i in range(6)
    }


def test_member_count_is_walked_not_taken_from_the_end_record(tmp_path: Path) -> None:
    entries = [Entry(f"{i}.xml") for i in range(50)]
    path = craft_zip(tmp_path / "a.zip", entries, declared_count=1)

    message = refused_up_front(path, limits=ArchiveLimits(max_members=10))

    assert message == "archive has more than 10 members (limit 10)"


def test_default_member_limit_is_ten_thousand(tmp_path: Path) -> None:
    path = craft_zip(tmp_path / "a.zip", [Entry(f"{i}", plain=b"") for i in range(10_001)])

    assert refused_up_front(path) == "archive has 10001 members (limit 10000)"


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.xml", JUNIT)
        link = zipfile.ZipInfo("results/link.xml")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")

    assert refused_up_front(path) == 'symlink member "results/link.xml" refused'


@pytest.mark.parametrize("bit", [0x01, 0x40])
def test_encrypted_member_is_refused(tmp_path: Path, bit: int) -> None:
    path = craft_zip(tmp_path / "a.zip", [Entry("ok.xml"), Entry("secret.xml", flags=bit)])

    assert refused_up_front(path) == 'encrypted member "secret.xml" refused'


def test_unsupported_compression_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.xml", JUNIT)
        zf.writestr("b.xml", JUNIT, compress_type=zipfile.ZIP_BZIP2)

    message = refused_up_front(path)

    assert message == 'member "b.xml" uses unsupported compression method 12'


@pytest.mark.parametrize(
    "content", [b"", b"just some text, not an archive\n", b"PK\x03\x04" + bytes(100)]
)
def test_not_a_zip_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(content)

    assert refused_up_front(path).startswith("not a ZIP archive")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_zip_is_refused(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(20):
            zf.writestr(f"{i}.xml", JUNIT * 50)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])

    assert refused_up_front(path).startswith("not a ZIP archive")


def test_zip_missing_its_member_data_is_refused(tmp_path: Path) -> None:
    # Central directory intact, but bytes cut from the middle: offsets no longer land on
    # local headers.
    entries = [Entry(f"{i}.xml", plain=random.Random(i).randbytes(100)) for i in range(5)]
    path = craft_zip(tmp_path / "a.zip", entries)
    data = path.read_bytes()
    path.write_bytes(data[:150] + data[250:])

    message = refused_up_front(path)

    assert "no local header" in message or "runs past" in message


def test_names_disagreeing_between_headers_are_refused(tmp_path: Path) -> None:
    path = craft_zip(tmp_path / "a.zip", [Entry("aaaa.xml")])
    data = path.read_bytes()
    path.write_bytes(data.replace(b"aaaa.xml", b"bbbb.xml", 1))  # local header only

    assert "different name in its local header" in refused_up_front(path)


def test_undecodable_utf8_name_is_refused(tmp_path: Path) -> None:
    path = craft_zip(tmp_path / "a.zip", [Entry("\u00e9t\u00e9.xml", flags=0x800)])
    data = path.read_bytes()
    path.write_bytes(data.replace("\u00e9t\u00e9".encode(), b"\xff\xfe\xff\xfe"))

    assert refused_up_front(path).startswith("corrupt ZIP central directory")


# --- caps enforced on produced bytes while reading -------------------------------------------


def drain_refused(path: Path, **kwargs: object) -> tuple[MemberRefused, int, dict[str, bytes]]:
    """Read every member; the one refusal, the bytes the refused member handed out, the rest."""
    refusals, handed_out, read = [], 0, {}
    for member, stream in iter_junit_members(path, **kwargs):
        data = bytearray()
        try:
            while chunk := stream.read(64 * 1024):  # as the parser reads
                data += chunk
        except MemberRefused as exc:
            refusals.append(exc)
            handed_out += len(data)
        else:
            read[member.name] = bytes(data)
    [refusal] = refusals
    return refusal, handed_out, read


@pytest.mark.timeout(120)
def test_classic_bomb_is_refused_by_ratio_cap_with_bounded_memory(tmp_path: Path) -> None:
    path = zeros_bomb(tmp_path / "bomb.zip", size=2 << 30)  # 2 GiB of zeros, ~2 MiB file
    process = psutil.Process()
    rss_before = process.memory_info().rss

    refusal, handed_out, _ = drain_refused(path)

    assert str(refusal).startswith('member "bomb.xml" refused: compression ratio over 200:1 (')
    assert handed_out == 0
    assert refusal.produced <= 2 * MiB  # the grace and one read past it, of 2 GiB
    assert process.memory_info().rss - rss_before < 100 * MiB


@pytest.mark.timeout(120)
def test_testcase_bomb_with_a_large_compressed_size_is_refused_by_what_it_consumed(
    tmp_path: Path,
) -> None:
    entry = junit_bomb_entry()  # 512 MiB of XML in a 3.5 MB member
    path = craft_zip(tmp_path / "bomb.zip", [Entry("a.xml"), entry, Entry("z.xml")])
    compressed = len(entry.payload or b"")
    assert entry.usize and entry.usize < 200 * compressed  # its sizes look innocent

    refusal, handed_out, read = drain_refused(path)

    assert str(refusal).startswith(
        'member "reports/bomb.xml" refused: compression ratio over 200:1 ('
    )
    assert handed_out == 0  # nothing of it reached the reader
    assert refusal.produced <= 2 * MiB  # of 512 MiB
    assert read == {"a.xml": JUNIT, "z.xml": JUNIT}  # the archive's other members are read


@pytest.mark.timeout(120)
def test_bomb_behind_an_innocent_prefix_is_refused_within_the_ratio_credit(
    tmp_path: Path,
) -> None:
    # 8 MiB that compress 2:1 would earn a ratio over the member so far room for 800 MiB.
    path = craft_zip(tmp_path / "bomb.zip", [junit_bomb_entry(mib=256, prefix=8 * MiB)])
    limits = ArchiveLimits()

    refusal, handed_out, _ = drain_refused(path, limits=limits)

    assert "a stretch of it inflates more than 200:1" in str(refusal)
    # The prefix, then at most the credit and the grace spent at the bomb's ~285:1.
    credit = limits.ratio_credit_bytes + limits.ratio_grace_bytes
    assert refusal.produced <= 8 * MiB + credit * 285 // 85 + MiB
    assert handed_out <= refusal.produced - limits.ratio_grace_bytes
    # Without the credit's cap, the whole 256 MiB would have gone through.
    unbounded = ArchiveLimits(ratio_credit_bytes=1 << 40)
    for _, stream in iter_junit_members(path, limits=unbounded):
        assert drain(stream) > 256 * MiB


def test_stdlib_zipfile_reads_the_testcase_bomb_whole(tmp_path: Path) -> None:
    # The bomb above is a valid archive, not one zipfile would refuse by itself.
    path = craft_zip(tmp_path / "bomb.zip", [junit_bomb_entry(mib=16)])
    with zipfile.ZipFile(path) as zf, zf.open("reports/bomb.xml") as member:
        assert drain(member) == zf.getinfo("reports/bomb.xml").file_size > 15 * MiB


def test_member_within_the_hold_back_is_checked_whole_before_a_byte_is_handed_out(
    tmp_path: Path,
) -> None:
    # A bad CRC is only known at the end; a small member is vetted whole first.
    path = craft_zip(tmp_path / "a.zip", [Entry("a.xml", plain=JUNIT * 1000, crc=1)])
    handed_out = 0
    with pytest.raises(ArchiveError, match="Bad CRC-32"):
        for _, stream in iter_junit_members(path):
            while data := stream.read(100):
                handed_out += len(data)
    assert handed_out == 0


@pytest.mark.timeout(60)
def test_read_all_of_a_bomb_stops_at_the_member_cap(tmp_path: Path) -> None:
    path = zeros_bomb(tmp_path / "bomb.zip", size=256 * MiB)
    limits = ArchiveLimits(max_member_bytes=8 * MiB, max_ratio=10**9)
    process = psutil.Process()
    rss_before = process.memory_info().rss

    with pytest.raises(MemberRefused, match=r'^member "bomb.xml" refused: it expands past 8 MiB$'):
        for _, stream in iter_junit_members(path, limits=limits):
            stream.read()

    assert process.memory_info().rss - rss_before < 100 * MiB


def test_refusal_is_sticky(tmp_path: Path) -> None:
    path = zeros_bomb(tmp_path / "bomb.zip", size=16 * MiB)
    limits = ArchiveLimits(max_member_bytes=2 * MiB, max_ratio=10**9)
    for _, stream in iter_junit_members(path, limits=limits):
        with pytest.raises(ArchiveError):
            drain(stream)
        with pytest.raises(ArchiveError, match="expands past 2 MiB"):
            stream.read(10)


def test_member_cap_counts_produced_bytes_when_declared_size_is_huge(tmp_path: Path) -> None:
    plain = b"<a/>" * (MiB // 2)  # 2 MiB produced
    path = craft_zip(tmp_path / "a.zip", [Entry("a.xml", plain=plain, usize=0xFFFF_FFF0)])
    limits = ArchiveLimits(max_member_bytes=MiB, max_ratio=10**9)

    with pytest.raises(MemberRefused, match=r'^member "a.xml" refused: it expands past 1 MiB$'):
        read_members(path, limits=limits)


def test_declared_size_is_informative_only(tmp_path: Path) -> None:
    # Declares ~4 GiB, far over the cap, but produces little: it is read, not refused.
    path = craft_zip(tmp_path / "a.zip", [Entry("a.xml", usize=0xFFFF_FFF0)])
    limits = ArchiveLimits(max_member_bytes=MiB)

    [(member, data)] = [(m, s.read()) for m, s in iter_junit_members(path, limits=limits)]

    assert data == JUNIT and member.declared_size == 0xFFFF_FFF0


def test_header_declaring_less_than_it_produces_never_hands_out_more(tmp_path: Path) -> None:
    # Declares 1 KiB (under every cap) but its data inflates to 4 MiB: whatever the reader
    # does with the excess, the consumer never sees more than the cap and gets an error.
    plain = b"<a/>" * MiB
    path = craft_zip(tmp_path / "a.zip", [Entry("a.xml", plain=plain, usize=1024)])
    limits = ArchiveLimits(max_member_bytes=64 * 1024)
    handed_out = 0

    with pytest.raises(ArchiveError, match=r'"a\.xml"'):
        for _, stream in iter_junit_members(path, limits=limits):
            while data := stream.read(4096):
                handed_out += len(data)

    assert handed_out <= 64 * 1024


def test_total_cap_across_members(tmp_path: Path) -> None:
    noise = random.Random(0).randbytes(600 * 1024)  # incompressible: no ratio cap involved
    path = craft_zip(tmp_path / "a.zip", [Entry(f"{i}.xml", plain=noise) for i in range(3)])
    limits = ArchiveLimits(max_total_bytes=MiB)
    completed = []

    with pytest.raises(ArchiveError, match=r"^archive expands past 1 MiB$"):
        for member, stream in iter_junit_members(path, limits=limits):
            assert stream.read() == noise
            completed.append(member.name)

    assert completed == ["0.xml"]


def test_total_cap_allows_archive_that_fits(tmp_path: Path) -> None:
    noise = random.Random(0).randbytes(300 * 1024)
    path = craft_zip(tmp_path / "a.zip", [Entry(f"{i}.xml", plain=noise) for i in range(3)])

    got = read_members(path, limits=ArchiveLimits(max_total_bytes=MiB))

    assert got == {f"{i}.xml": noise for i in range(3)}


def test_ratio_cap_honours_custom_values_and_grace(tmp_path: Path) -> None:
    plain = bytes(4 * MiB)  # ~1000:1
    path = craft_zip(tmp_path / "a.zip", [Entry("z.xml", plain=plain)])

    with pytest.raises(
        MemberRefused, match=r'^member "z.xml" refused: compression ratio over 100:1'
    ):
        read_members(path, limits=ArchiveLimits(max_ratio=100))
    # Within the grace the ratio is not checked: small XML compresses extremely well.
    assert read_members(path, limits=ArchiveLimits(max_ratio=100, ratio_grace_bytes=8 * MiB))
    assert read_members(path, limits=ArchiveLimits(max_ratio=2000)) == {"z.xml": plain}


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_crc_corruption_is_refused_while_reading(tmp_path: Path, method: int) -> None:
    path = craft_zip(
        tmp_path / "a.zip", [Entry("a.xml", plain=JUNIT * 10, method=method, crc=0xDEADBEEF)]
    )
    for _, stream in iter_junit_members(path):
        with pytest.raises(ArchiveError, match=r'^member "a.xml" is corrupt: Bad CRC-32'):
            stream.read()


def test_corrupt_deflate_data_is_refused_while_reading(tmp_path: Path) -> None:
    path = craft_zip(tmp_path / "a.zip", [Entry("a.xml", payload=b"\xff" * 64)])
    for _, stream in iter_junit_members(path):
        with pytest.raises(ArchiveError, match=r'^member "a.xml" is corrupt'):
            stream.read()


def test_limits_defaults_and_validation() -> None:
    assert ArchiveLimits() == ArchiveLimits(
        max_members=10_000,
        max_member_bytes=1 << 30,
        max_total_bytes=4 << 30,
        max_ratio=200,
        ratio_grace_bytes=MiB,
        ratio_credit_bytes=16 * MiB,
    )
    with pytest.raises(ValueError, match="max_ratio"):
        ArchiveLimits(max_ratio=0)
    with pytest.raises(ValueError, match="max_members"):
        ArchiveLimits(max_members=-1)
