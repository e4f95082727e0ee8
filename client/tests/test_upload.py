"""``flakeguard upload`` as a subprocess against the fake server."""

import hashlib
import os
import shutil
import ssl
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import RUN_METADATA, SHA, SRC, clean_env, flakeguard, server_env
from fakeserver import TOKEN, FakeFlakeGuard
from reports import junit


def write_reports(folder: Path) -> list[Path]:
    (folder / "reports").mkdir()
    one = folder / "reports" / "linux.xml"
    one.write_text(junit(("t.a", "test_a", "pass")))
    two = folder / "reports" / "mac.xml"
    two.write_text(junit(("t.a", "test_a", "failure")))
    archive = folder / "artifact.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("junit.xml", junit(("t.b", "test_b", "pass")))
    return [one, two, archive]


def test_upload_sends_one_run_attempt(server: FakeFlakeGuard, tmp_path: Path) -> None:
    files = write_reports(tmp_path)
    result = flakeguard(
        [
            "upload",
            "reports/*.xml",
            "artifact.zip",
            *RUN_METADATA,
            "--workflow",
            "CI",
            "--job",
            "linux",
            "--started-at",
            "2026-09-01T12:00:00Z",
        ],
        env=server_env(server.url),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"uploaded 3 file(s) as upload 1 (pending): {server.url}/api/v1/uploads/1/"
    )
    [upload] = server.uploads
    assert upload.fields == {
        "repo": "acme/shop",
        "run_id": "812",
        "run_attempt": "1",
        "sha": SHA,
        "branch": "main",
        "event": "push",
        "started_at": "2026-09-01T12:00:00+00:00",
        "workflow": "CI",
        "job": "linux",
    }
    assert [(f.filename, f.content_type) for f in upload.files] == [
        ("linux.xml", "application/xml"),
        ("mac.xml", "application/xml"),
        ("artifact.zip", "application/zip"),
    ]
    assert [f.content for f in upload.files] == [p.read_bytes() for p in files]
    assert upload.headers["Authorization"] == f"Bearer {TOKEN}"
    assert upload.headers["Accept"] == "application/json"
    assert upload.headers["User-Agent"] == "flakeguard-client/0.1.0"
    assert "Transfer-Encoding" not in upload.headers
    assert TOKEN not in result.stdout + result.stderr


def test_started_at_defaults_to_now_with_a_timezone(server: FakeFlakeGuard, tmp_path: Path) -> None:
    write_reports(tmp_path)
    result = flakeguard(
        ["upload", "artifact.zip", *RUN_METADATA], env=server_env(server.url), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    started = server.uploads[0].fields["started_at"]
    assert started.endswith("+00:00")


def test_metadata_is_detected_from_github_actions(server: FakeFlakeGuard, tmp_path: Path) -> None:
    write_reports(tmp_path)
    env = clean_env(
        FLAKEGUARD_URL=server.url,
        FLAKEGUARD_TOKEN=TOKEN,
        GITHUB_ACTIONS="true",
        GITHUB_REPOSITORY="acme/shop",
        GITHUB_RUN_ID="9876543210",
        GITHUB_RUN_ATTEMPT="2",
        GITHUB_SHA="a" * 40,
        GITHUB_REF_NAME="main",
        GITHUB_EVENT_NAME="push",
        GITHUB_WORKFLOW="CI",
        GITHUB_JOB="tests",
    )
    result = flakeguard(["upload", "artifact.zip", "--run-attempt", "3"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    fields = server.uploads[0].fields
    assert (fields["run_id"], fields["run_attempt"], fields["job"]) == ("9876543210", "3", "tests")


def test_wait_prints_the_summary(server: FakeFlakeGuard, tmp_path: Path) -> None:
    write_reports(tmp_path)
    # Links name an origin the client cannot reach: it must stay on the one configured.
    server.advertised_origin = "http://flakeguard.internal:8000"
    result = flakeguard(
        ["upload", "artifact.zip", "--wait", *RUN_METADATA],
        env=server_env(server.url),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("uploaded 1 file(s) as upload 1 (pending)")
    assert lines[1:] == [
        "upload 1 done: 3 results stored from 1 file(s)",
        "refused bad.xml: not XML",
    ]


def test_wait_reports_a_failed_import(server: FakeFlakeGuard, tmp_path: Path) -> None:
    write_reports(tmp_path)
    server.upload_states = ["importing", "failed"]
    result = flakeguard(
        ["upload", "artifact.zip", "--wait", *RUN_METADATA],
        env=server_env(server.url),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "upload 1 failed on the server: the archive is corrupt" in result.stderr


def test_wait_gives_up_within_the_timeout(server: FakeFlakeGuard, tmp_path: Path) -> None:
    write_reports(tmp_path)
    server.upload_states = ["pending"]
    started = time.monotonic()
    result = flakeguard(
        ["upload", "artifact.zip", "--wait", "--timeout", "1.5", *RUN_METADATA],
        env=server_env(server.url),
        cwd=tmp_path,
    )
    assert time.monotonic() - started < 6
    assert result.returncode == 1
    assert "upload 1 is still pending after 1.5 s (--timeout)" in result.stderr


def test_a_repeated_run_attempt_is_reported(server: FakeFlakeGuard, tmp_path: Path) -> None:
    write_reports(tmp_path)
    for _ in range(2):
        result = flakeguard(
            ["upload", "artifact.zip", *RUN_METADATA], env=server_env(server.url), cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
    assert len(server.uploads) == 1
    assert "the server already had an upload for run 812 attempt 1 of acme/shop" in result.stderr


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (
            {"token": "wrong"},
            "refused the token (HTTP 401): Invalid token.; check FLAKEGUARD_TOKEN",
        ),
        (
            {"repo": "acme/secret"},
            "HTTP 404: the repository is not known to the server or not visible to this token",
        ),
        ({"mode": "500"}, "answered HTTP 500: Internal Server Error"),
        ({"mode": "429"}, "is rate limiting this client (HTTP 429); it asks to retry after 120 s"),
    ],
)
def test_server_errors_are_one_clear_line(
    server: FakeFlakeGuard, tmp_path: Path, setup: dict[str, str], expected: str
) -> None:
    write_reports(tmp_path)
    server.mode = setup.get("mode")
    env = server_env(
        server.url,
        FLAKEGUARD_TOKEN=setup.get("token", TOKEN),
        FLAKEGUARD_REPO=setup.get("repo", "acme/shop"),
    )
    result = flakeguard(["upload", "artifact.zip", *RUN_METADATA], env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"flakeguard: upload failed: {server.url} ")
    assert expected in result.stderr
    assert setup.get("token", TOKEN) not in result.stderr


def test_an_early_413_is_reported_even_if_the_body_was_not_read(
    server: FakeFlakeGuard, tmp_path: Path
) -> None:
    big = tmp_path / "big.xml"
    with open(big, "wb") as f:
        f.truncate(20 * 1024 * 1024)
    server.mode = "413"
    result = flakeguard(
        ["upload", "big.xml", *RUN_METADATA], env=server_env(server.url), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "refused the upload as too large (HTTP 413): the upload is larger" in result.stderr


def test_a_short_retry_after_is_waited_for(server: FakeFlakeGuard, tmp_path: Path) -> None:
    write_reports(tmp_path)
    server.mode, server.mode_count, server.retry_after = "429", 1, "1"
    result = flakeguard(
        ["upload", "artifact.zip", *RUN_METADATA], env=server_env(server.url), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert len(server.uploads) == 1
    assert len(server.uploads[0].files[0].content) > 0


def test_unreachable_server(closed_port_url: str, tmp_path: Path) -> None:
    write_reports(tmp_path)
    result = flakeguard(
        ["upload", "artifact.zip", *RUN_METADATA], env=server_env(closed_port_url), cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"flakeguard: upload failed: cannot reach {closed_port_url}: connection refused\n"
    )


@pytest.mark.parametrize("mode", ["hang", "drip"])
def test_the_timeout_bounds_the_whole_call(
    server: FakeFlakeGuard, tmp_path: Path, mode: str
) -> None:
    write_reports(tmp_path)
    server.mode = mode
    started = time.monotonic()
    result = flakeguard(
        ["upload", "artifact.zip", "--timeout", "1", *RUN_METADATA],
        env=server_env(server.url),
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert f"no answer from {server.url} within 1 s (--timeout)" in result.stderr
    assert elapsed < 5


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["artifact.zip"],
            {"FLAKEGUARD_URL": ""},
            "no server URL: pass --url or set FLAKEGUARD_URL",
        ),
        (
            ["artifact.zip"],
            {"FLAKEGUARD_TOKEN": ""},
            "no API token: pass --token or set FLAKEGUARD_TOKEN",
        ),
        (["artifact.zip", "--run-id", "1"], {}, "no commit: pass --sha"),
        (["nothing/*.xml", *RUN_METADATA], {}, "no file matches nothing/*.xml"),
        (["notes.txt", *RUN_METADATA], {}, "notes.txt: only .xml and .zip reports can be uploaded"),
    ],
)
def test_usage_errors(
    server: FakeFlakeGuard, tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    write_reports(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    result = flakeguard(["upload", *args], env=server_env(server.url, **env), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"flakeguard: {expected}\n"
    assert server.requests == []


def test_upload_through_an_http_proxy(server: FakeFlakeGuard, tmp_path: Path) -> None:
    # The fake server plays the proxy too: the client must send it the absolute URL
    # of a host it never resolves itself.
    write_reports(tmp_path)
    env = server_env("http://flakeguard.invalid", HTTP_PROXY=server.url, NO_PROXY="")
    result = flakeguard(["upload", "artifact.zip", *RUN_METADATA], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert server.requests[0][1] == "http://flakeguard.invalid/api/v1/uploads/"


@pytest.fixture
def tls_server(tmp_path: Path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    fake = FakeFlakeGuard(tls=context).start()
    yield fake, cert
    fake.stop()


def test_https_checks_the_certificate(tls_server, tmp_path: Path) -> None:
    server, cert = tls_server
    write_reports(tmp_path)
    untrusted = flakeguard(
        ["upload", "artifact.zip", *RUN_METADATA], env=server_env(server.url), cwd=tmp_path
    )
    assert untrusted.returncode == 1
    assert f"upload failed: cannot reach {server.url}: TLS certificate not trusted" in (
        untrusted.stderr
    )
    assert server.uploads == []
    trusted = flakeguard(
        ["upload", "artifact.zip", *RUN_METADATA],
        env=server_env(server.url, SSL_CERT_FILE=str(cert)),
        cwd=tmp_path,
    )
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.startswith("uploaded 1 file(s) as upload 1 (pending): https://")
    assert len(server.uploads) == 1


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_the_body_is_streamed_from_disk(server: FakeFlakeGuard, tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    size = 50 * 1024 * 1024
    with open(big, "wb") as f:
        f.write(b"<testsuite>")
        f.truncate(size - len(b"</testsuite>"))
        f.seek(0, os.SEEK_END)
        f.write(b"</testsuite>")
    # VmHWM, not getrusage: a child's ru_maxrss starts from its parent's peak at
    # fork, and this test process holds the fake server's copies of the body.
    measure = (
        "import sys\n"
        "from flakeguard_client.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print('peak_kib', hwm.split()[1], file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", measure, "upload", "big.xml", *RUN_METADATA],
        env=server_env(server.url, PYTHONPATH=str(SRC)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    [received] = server.uploads[0].files
    digest = hashlib.sha256()
    with open(big, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    assert (received.size, received.sha256) == (size, digest.hexdigest())
    peak_mib = int(result.stderr.split("peak_kib ")[1].split()[0]) / 1024
    assert peak_mib < 30, f"peak RSS {peak_mib:.1f} MiB for a 50 MiB upload"
