"""Hostile and broken inputs: ingest.junit refuses them with a clear JUnitError.

One test per class of attack or breakage. Where an attack aims at memory, the
parse runs in a fresh interpreter that reports its own peak RSS growth (VmHWM;
ru_maxrss off Linux), since libxml2 allocates outside tracemalloc's view. Where
it aims at the file system or network, the test checks that the file's content
never surfaces and that no connection reaches a listening local port. Time
bounds are pytest-timeout markers, never assertions on elapsed time.
"""

from __future__ import annotations

import gzip
import io
import json
import select
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.junit import JUnitError, iter_test_cases, summarize

REPO_ROOT = Path(__file__).resolve().parents[2]

# Peak RSS growth allowed while refusing an attack. A refused DOCTYPE costs
# nothing; the flood tests build up to their refusal threshold first.
REFUSED_EARLY_MB = 20
FLOOD_MB = 100

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b']>\n<testsuites><testsuite name="&lol9;"><testcase name="&lol9;"/></testsuite>'
    b"</testsuites>"
)

QUADRATIC_BLOWUP = (
    b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]><testsuites><testsuite name="s"><testcase name="'
    + b"&a;" * 50_000
    + b'"/></testsuite></testsuites>'
)


def _parse(data: bytes) -> list[object]:
    return list(iter_test_cases(io.BytesIO(data)))


def _refusal(data: bytes) -> str:
    with pytest.raises(JUnitError) as caught:
        _parse(data)
    return str(caught.value)


# --- isolated runs: peak memory of one parse in a fresh interpreter ----------

_CHILD = textwrap.dedent(
    """
    import io, json, sys
    sys.path.insert(0, sys.argv[1])

    from tests.peak_memory import peak_kb
    from ingest.junit import JUnitError, iter_test_cases

    spec = json.loads(sys.stdin.read())
    if "path" in spec:
        stream = open(spec["path"], "rb")
    else:
        head, unit, tail = (bytes.fromhex(spec[k]) for k in ("head", "unit", "tail"))
        repeat = spec["repeat"]

        class Stream(io.RawIOBase):
            # Streams head + unit * repeat + tail without ever holding it whole.
            def __init__(self):
                self.pending, self.left, self.done = head, repeat, False
            def readable(self):
                return True
            def read(self, size=-1):
                while len(self.pending) < size and not self.done:
                    if self.left:
                        n = min(self.left, max(1, 65536 // len(unit)))
                        self.pending += unit * n
                        self.left -= n
                    else:
                        self.pending += tail
                        self.done = True
                out, self.pending = self.pending[:size], self.pending[size:]
                return out

        stream = Stream()

    before = peak_kb()
    records, error = 0, None
    try:
        for _ in iter_test_cases(stream):
            records += 1
    except JUnitError as exc:
        error = str(exc)
    peak = peak_kb()
    print(json.dumps({"error": error, "records": records, "grew_mb": (peak - before) / 1024}))
    """
)


def _isolated(spec: dict[str, object]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(REPO_ROOT)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def _isolated_file(tmp_path: Path, data: bytes) -> dict[str, object]:
    path = tmp_path / "report.xml"
    path.write_bytes(data)
    return _isolated({"path": str(path)})


def _isolated_stream(head: bytes, unit: bytes, repeat: int, tail: bytes) -> dict[str, object]:
    return _isolated({"head": head.hex(), "unit": unit.hex(), "repeat": repeat, "tail": tail.hex()})


# --- entity expansion ---------------------------------------------------------


@pytest.mark.timeout(30)
def test_billion_laughs_is_refused_at_the_doctype(tmp_path: Path) -> None:
    assert "DOCTYPE declarations are refused" in _refusal(BILLION_LAUGHS)
    outcome = _isolated_file(tmp_path, BILLION_LAUGHS)
    assert outcome["records"] == 0
    assert "DOCTYPE" in str(outcome["error"])
    assert outcome["grew_mb"] < REFUSED_EARLY_MB


@pytest.mark.timeout(30)
def test_quadratic_blowup_is_refused_at_the_doctype(tmp_path: Path) -> None:
    assert "DOCTYPE declarations are refused" in _refusal(QUADRATIC_BLOWUP)
    outcome = _isolated_file(tmp_path, QUADRATIC_BLOWUP)
    assert "DOCTYPE" in str(outcome["error"])
    assert outcome["grew_mb"] < REFUSED_EARLY_MB


@pytest.mark.timeout(30)
def test_doctype_is_refused_in_utf16_too() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        '<!DOCTYPE t [<!ENTITY a "b">]><testsuites><testcase name="&a;"/></testsuites>'
    )
    for codec in ("utf-16", "utf-16-be"):
        data = body.encode(codec)
        if codec == "utf-16-be":
            data = "\ufeff".encode(codec) + data
        assert "DOCTYPE declarations are refused" in _refusal(data)


def test_doctype_without_entities_is_refused_as_well() -> None:
    assert "DOCTYPE" in _refusal(b"<!DOCTYPE testsuites><testsuites/>")


# --- external resources: file system and network ---------------------------------


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-CONTENT-4242")
    return path


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "template",
    [
        '<!DOCTYPE t [<!ENTITY x SYSTEM "{uri}">]><testsuites><testsuite name="s">'
        '<testcase name="&x;"><failure message="&x;">&x;</failure></testcase>'
        "</testsuite></testsuites>",
        '<!DOCTYPE testsuites SYSTEM "{uri}"><testsuites><testcase name="t"/></testsuites>',
    ],
    ids=["external-general-entity", "external-dtd"],
)
def test_external_entity_to_a_local_file_never_reads_it(secret_file: Path, template: str) -> None:
    data = template.format(uri=secret_file.as_uri()).encode()
    message = _refusal(data)
    assert "DOCTYPE declarations are refused" in message
    assert "TOP-SECRET" not in message


@pytest.fixture
def listening_port() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def _was_contacted(server: socket.socket) -> bool:
    # Parsing is synchronous: a connection libxml2 made would already sit in the
    # accept backlog, so a zero-timeout poll is enough.
    readable, _, _ = select.select([server], [], [], 0)
    return bool(readable)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "template",
    [
        '<!DOCTYPE t [<!ENTITY x SYSTEM "{url}/entity">]><testsuites><testcase name="&x;"/>'
        "</testsuites>",
        '<!DOCTYPE testsuites SYSTEM "{url}/junit.dtd"><testsuites><testcase name="t"/>'
        "</testsuites>",
        '<!DOCTYPE t [<!ENTITY % p SYSTEM "{url}/param.dtd"> %p;]><testsuites/>',
    ],
    ids=["http-entity", "http-dtd", "http-parameter-entity"],
)
def test_external_entity_over_http_makes_no_connection(
    listening_port: socket.socket, template: str
) -> None:
    host, port = listening_port.getsockname()
    data = template.format(url=f"http://{host}:{port}").encode()
    assert "DOCTYPE declarations are refused" in _refusal(data)
    assert not _was_contacted(listening_port)


@pytest.mark.timeout(30)
def test_parameter_entities_are_refused(secret_file: Path) -> None:
    data = (
        f'<!DOCTYPE t [<!ENTITY % file SYSTEM "{secret_file.as_uri()}">'
        "<!ENTITY % wrap \"<!ENTITY leak '%file;'>\"> %wrap;]>"
        '<testsuites><testcase name="&leak;"/></testsuites>'
    ).encode()
    message = _refusal(data)
    assert "DOCTYPE declarations are refused" in message
    assert "TOP-SECRET" not in message


@pytest.mark.timeout(30)
def test_xinclude_is_refused_and_never_processed(secret_file: Path) -> None:
    data = (
        '<testsuites xmlns:xi="http://www.w3.org/2001/XInclude"><testsuite name="s">'
        f'<testcase name="t"><failure><xi:include href="{secret_file.as_uri()}" parse="text"/>'
        "</failure></testcase></testsuite></testsuites>"
    ).encode()
    message = _refusal(data)
    assert "XInclude elements are refused" in message
    assert "TOP-SECRET" not in message


# --- structure bombs ------------------------------------------------------------


@pytest.mark.timeout(60)
def test_deep_nesting_is_refused_within_bounded_memory() -> None:
    levels = 100_000
    outcome = _isolated_stream(
        b"<testsuites>", b"<testsuite>", levels, b"</testsuite>" * levels + b"</testsuites>"
    )
    assert "nested too deeply" in str(outcome["error"])
    assert outcome["grew_mb"] < REFUSED_EARLY_MB


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("head", "unit", "tail"),
    [
        # junk elements before anything JUnit-like has ended
        (b"<testsuites>", b"<x/>", b"</testsuites>"),
        # junk inside one never-ending testcase
        (b'<testsuite name="s"><testcase name="t">', b"<x/>", b"</testcase></testsuite>"),
        # testcases nested in a testcase cannot be pruned either
        (b'<testsuite name="s"><testcase name="t">', b"<testcase/>", b"</testcase></testsuite>"),
    ],
    ids=["elements-before-any-testcase", "elements-inside-a-testcase", "testcases-in-a-testcase"],
)
def test_element_floods_are_refused_within_bounded_memory(
    head: bytes, unit: bytes, tail: bytes
) -> None:
    outcome = _isolated_stream(head, unit, 25_000_000, tail)  # 100+ MB of tags
    assert "refused to bound memory" in str(outcome["error"])
    assert outcome["grew_mb"] < FLOOD_MB


@pytest.mark.timeout(60)
def test_text_flood_inside_a_testcase_is_refused_within_bounded_memory() -> None:
    unit = b"<system-out>" + b"y" * 8_000_000 + b"</system-out>"
    outcome = _isolated_stream(
        b'<testsuite name="s"><testcase name="t">', unit, 25, b"</testcase></testsuite>"
    )
    assert "refused to bound memory" in str(outcome["error"])
    assert outcome["grew_mb"] < FLOOD_MB


@pytest.mark.timeout(60)
def test_cdata_full_of_angle_brackets_is_not_mistaken_for_a_flood() -> None:
    outcome = _isolated_stream(
        b'<testsuite name="s"><testcase name="a"/><testcase name="b"><system-out><![CDATA[',
        b"<" * 1000,
        9_000,  # 9 MB of '<', under libxml2's 10 MB text-node limit
        b"]]></system-out></testcase></testsuite>",
    )
    assert outcome["error"] is None
    assert outcome["records"] == 2


@pytest.mark.timeout(30)
def test_text_node_over_libxml2_limit_is_refused() -> None:
    data = b'<testsuite><testcase name="t"><system-out>' + b"z" * 11_000_000
    data += b"</system-out></testcase></testsuite>"
    assert "resource limit" in _refusal(data)


# --- plain breakage ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\x01\x02 binary junk", "not XML"),
        (b"PK\x03\x04\x14\x00\x00\x00", "zip archive"),
        (gzip.compress(b"<testsuites/>"), "gzip-compressed"),
        (b'{"tests": 3}', "JSON"),
        (b"just some text", "not XML"),
    ],
    ids=["binary", "zip", "gzip", "json", "text"],
)
def test_non_xml_is_refused(data: bytes, expected: str) -> None:
    assert expected in _refusal(data)


@pytest.mark.parametrize(
    "data",
    [
        b'<testsuites><testsuite name="s"><testcase name="a"/><testcase name="b"><failure>tra',
        b'<testsuites><testsuite name="s"><testcase name="a"/><testca',
        b'<testsuites><testsuite name="s"><testcase name="a',
    ],
    ids=["in-text", "in-tag", "in-attribute"],
)
def test_truncated_files_are_refused(data: bytes) -> None:
    message = _refusal(data)
    assert "truncated" in message or "not well-formed" in message
    assert "line 1" in message


def test_truncated_file_message_names_the_open_element() -> None:
    data = b'<testsuites><testsuite name="s"><testcase name="b"><failure>tra'
    assert _refusal(data) == "truncated XML: the file ends inside <failure> (line 1, column 64)"


def test_invalid_utf8_is_refused_with_its_position() -> None:
    data = b'<testsuites>\n<testsuite name="s">\n<testcase name="caf\xc3\x28"/>'
    data += b"</testsuite></testsuites>"
    message = _refusal(data)
    assert message.startswith("invalid UTF-8")
    assert "line 3" in message


@pytest.mark.parametrize("data", [b"", b"  \n\t ", b"\xef\xbb\xbf"], ids=["empty", "blank", "bom"])
def test_empty_files_are_refused(data: bytes) -> None:
    assert _refusal(data).startswith("file is empty")


@pytest.mark.parametrize(
    ("data", "root"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "html"),
        (b'<?xml version="1.0"?><!-- note --><testcase name="t"/>', "testcase"),
        (b'<assemblies><assembly name="x"/></assemblies>', "assemblies"),
    ],
)
def test_wrong_root_is_refused(data: bytes, root: str) -> None:
    assert _refusal(data) == f"not a JUnit report: root element is <{root}>"


def test_undefined_entity_is_not_well_formed() -> None:
    message = _refusal(b'<testsuites><testcase name="&nbsp;"/></testsuites>')
    assert message == "not well-formed XML at line 1, column 35: Entity 'nbsp' not defined"


def test_summarize_raises_the_same_errors() -> None:
    with pytest.raises(JUnitError, match="DOCTYPE"):
        summarize(io.BytesIO(BILLION_LAUGHS))
