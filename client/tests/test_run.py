"""``flakeguard run`` as a subprocess, running a real command that writes reports."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import RUN_METADATA, flakeguard, server_env
from fakeserver import TOKEN, FakeFlakeGuard
from reports import junit

FLAKY = ("tests.test_shop", "test_checkout", "failure")
BROKEN = ("tests.test_shop", "test_refund", "error")
PASSING = ("tests.test_shop", "test_cart", "pass")


def command(status: int, reports: dict[str, str]) -> list[str]:
    """A test command that writes the given reports and exits with ``status``."""
    script = (
        "import os, sys\n"
        f"for path, text in {reports!r}.items():\n"
        "    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)\n"
        "    open(path, 'w').write(text)\n"
        "print('tests ran')\n"
        f"sys.exit({status})\n"
    )
    return [sys.executable, "-c", script]


def run(
    server_url: str,
    tmp_path: Path,
    status: int,
    reports: dict[str, str],
    *extra: str,
    junit_globs: tuple[str, ...] = ("reports/**/*.xml",),
    env: dict[str, str] | None = None,
):
    globs = [arg for g in junit_globs for arg in ("--junit", g)]
    return flakeguard(
        ["run", *globs, *RUN_METADATA, *extra, "--", *command(status, reports)],
        env=env or server_env(server_url),
        cwd=tmp_path,
    )


def test_only_quarantined_failures_pass(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.quarantine("tests.test_shop", "test_checkout", reason="payment sandbox times out")
    for i in range(3):  # more than a page: the list must be followed to its end
        server.quarantine("tests.other", f"test_{i}")
    result = run(server.url, tmp_path, 1, {"reports/unit/junit.xml": junit(PASSING, FLAKY)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tests ran\n"
    assert (
        "flakeguard: forgiven: tests.test_shop::test_checkout (quarantined: payment sandbox "
        "times out; owner: alice)"
    ) in result.stderr
    assert "exit status 0 instead of 1: all 1 failed test(s) are quarantined" in result.stderr
    [upload] = server.uploads
    assert [f.filename for f in upload.files] == ["junit.xml"]
    quarantine_pages = [r for r in server.requests if "/quarantine/" in r[1]]
    assert len(quarantine_pages) == 2
    assert "page_size=10000" in quarantine_pages[0][1]
    assert TOKEN not in result.stderr


def test_a_failure_that_is_not_quarantined_keeps_the_status(
    server: FakeFlakeGuard, tmp_path: Path
) -> None:
    server.quarantine("tests.test_shop", "test_checkout")
    result = run(server.url, tmp_path, 3, {"reports/junit.xml": junit(FLAKY, BROKEN)})
    assert result.returncode == 3
    assert "quarantined, not forgiven: tests.test_shop::test_checkout" in result.stderr
    assert "not quarantined: tests.test_shop::test_refund" in result.stderr
    assert "exit status 3 kept: 1 failed test(s) are not quarantined" in result.stderr


def test_every_report_counts(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.quarantine("tests.test_shop", "test_checkout")
    reports = {"reports/a.xml": junit(FLAKY), "reports/b.xml": junit(BROKEN)}
    result = run(server.url, tmp_path, 1, reports)
    assert result.returncode == 1
    assert len(server.uploads[0].files) == 2


def test_a_passing_command_still_uploads(server: FakeFlakeGuard, tmp_path: Path) -> None:
    result = run(server.url, tmp_path, 0, {"reports/junit.xml": junit(PASSING)})
    assert result.returncode == 0, result.stderr
    assert len(server.uploads) == 1
    assert not [r for r in server.requests if "/quarantine/" in r[1]]


def test_a_failed_command_without_failed_tests_keeps_its_status(
    server: FakeFlakeGuard, tmp_path: Path
) -> None:
    result = run(server.url, tmp_path, 2, {"reports/junit.xml": junit(PASSING)})
    assert result.returncode == 2
    assert "the reports list no failed test" in result.stderr


def test_stale_reports_are_ignored(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.quarantine("tests.test_shop", "test_checkout")
    stale = tmp_path / "reports" / "old.xml"
    stale.parent.mkdir()
    stale.write_text(junit(FLAKY))
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    # The command writes nothing this time: the old report must not make it pass.
    result = run(server.url, tmp_path, 1, {})
    assert result.returncode == 1
    assert "ignored 1 report(s) older than this command" in result.stderr
    assert "no report written by the command matches reports/**/*.xml" in result.stderr
    assert server.uploads == []
    # And alongside a fresh report, only the fresh one is uploaded.
    result = run(server.url, tmp_path, 1, {"reports/new.xml": junit(FLAKY)})
    assert result.returncode == 0, result.stderr
    assert [f.filename for f in server.uploads[0].files] == ["new.xml"]


def test_a_malformed_report_prevents_forgiveness(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.quarantine("tests.test_shop", "test_checkout")
    reports = {"reports/good.xml": junit(FLAKY), "reports/cut.xml": junit(FLAKY)[:120]}
    result = run(server.url, tmp_path, 1, reports)
    assert result.returncode == 1
    assert "reports/cut.xml: not well-formed XML" in result.stderr
    assert "exit status 1 kept: 1 report(s) could not be read" in result.stderr


def test_a_doctype_is_refused(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.quarantine("tests.test_shop", "test_checkout")
    evil = junit(FLAKY).replace("<testsuites>", '<!DOCTYPE t [<!ENTITY x "y">]><testsuites>', 1)
    result = run(server.url, tmp_path, 1, {"reports/evil.xml": evil})
    assert result.returncode == 1
    assert "refused: the report contains a <!DOCTYPE> declaration" in result.stderr


def test_server_down_keeps_the_status(closed_port_url: str, tmp_path: Path) -> None:
    result = run(closed_port_url, tmp_path, 1, {"reports/junit.xml": junit(FLAKY)})
    assert result.returncode == 1
    assert f"upload failed: cannot reach {closed_port_url}: connection refused" in result.stderr
    assert "exit status 1 kept: the reports could not be uploaded" in result.stderr


def test_server_error_keeps_the_status(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.quarantine("tests.test_shop", "test_checkout")
    server.mode = "500"
    result = run(server.url, tmp_path, 1, {"reports/junit.xml": junit(FLAKY)})
    assert result.returncode == 1
    assert "upload failed: " in result.stderr and "HTTP 500" in result.stderr


def test_quarantine_list_failure_keeps_the_status(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.quarantine("tests.test_shop", "test_checkout")
    # The upload goes through; the list never comes.
    server.mode, server.mode_path = "hang", "/quarantine/"
    started = time.monotonic()
    result = run(server.url, tmp_path, 1, {"reports/junit.xml": junit(FLAKY)}, "--timeout", "1")
    assert time.monotonic() - started < 6
    assert result.returncode == 1
    assert len(server.uploads) == 1
    assert "cannot fetch the quarantine list: no answer from" in result.stderr
    assert "exit status 1 kept: the quarantine list could not be fetched" in result.stderr


def test_a_hanging_server_is_timed_out(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.mode = "hang"
    started = time.monotonic()
    result = run(server.url, tmp_path, 1, {"reports/junit.xml": junit(FLAKY)}, "--timeout", "1")
    assert time.monotonic() - started < 6
    assert result.returncode == 1
    assert f"upload failed: no answer from {server.url} within 1 s (--timeout)" in result.stderr


def test_rate_limited(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.mode, server.retry_after = "429", "300"
    result = run(server.url, tmp_path, 1, {"reports/junit.xml": junit(FLAKY)})
    assert result.returncode == 1
    assert "rate limiting this client (HTTP 429); it asks to retry after 300 s" in result.stderr


def test_missing_settings_run_the_command_and_keep_its_status(tmp_path: Path) -> None:
    env = server_env("http://127.0.0.1:9", FLAKEGUARD_TOKEN="")
    result = run("", tmp_path, 1, {"reports/junit.xml": junit(FLAKY)}, env=env)
    assert result.returncode == 1
    assert result.stdout == "tests ran\n"
    assert "not uploading: no API token: pass --token or set FLAKEGUARD_TOKEN" in result.stderr


def test_zip_reports_are_read_and_uploaded(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.quarantine("tests.test_shop", "test_checkout")
    script = (
        "import sys, zipfile\n"
        "with zipfile.ZipFile('junit.zip', 'w') as z:\n"
        f"    z.writestr('a/junit.xml', {junit(FLAKY)!r})\n"
        "sys.exit(1)\n"
    )
    result = flakeguard(
        ["run", "--junit", "*.zip", *RUN_METADATA, "--", sys.executable, "-c", script],
        env=server_env(server.url),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert server.uploads[0].files[0].filename == "junit.zip"


def test_command_not_found(server: FakeFlakeGuard, tmp_path: Path) -> None:
    result = flakeguard(
        ["run", "--junit", "*.xml", *RUN_METADATA, "--", "no-such-command-x"],
        env=server_env(server.url),
        cwd=tmp_path,
    )
    assert result.returncode == 127
    assert "cannot run no-such-command-x: command not found" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_command_killed_by_a_signal_is_not_forgiven(
    server: FakeFlakeGuard, tmp_path: Path
) -> None:
    server.quarantine("tests.test_shop", "test_checkout")
    script = (
        "import os, signal\n"
        "os.makedirs('reports', exist_ok=True)\n"
        f"open('reports/junit.xml', 'w').write({junit(FLAKY)!r})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = flakeguard(
        ["run", "--junit", "reports/*.xml", *RUN_METADATA, "--", sys.executable, "-c", script],
        env=server_env(server.url),
        cwd=tmp_path,
    )
    assert result.returncode == 137
    assert "exit status 137 kept: the command was killed by signal 9" in result.stderr


def test_usage(tmp_path: Path) -> None:
    env = server_env("http://127.0.0.1:9")
    no_separator = flakeguard(["run", "--junit", "x.xml", "pytest"], env=env, cwd=tmp_path)
    assert no_separator.returncode == 2
    assert "put the command after --" in no_separator.stderr
    no_junit = flakeguard(["run", "--", "pytest"], env=env, cwd=tmp_path)
    assert no_junit.returncode == 2
    assert "--junit" in no_junit.stderr


def test_a_glob_expanded_by_the_shell_is_explained(tmp_path: Path) -> None:
    env = server_env("http://127.0.0.1:9")
    result = flakeguard(["run", "--junit", "a.xml", "b.xml", "--", "pytest"], env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "unexpected b.xml before --: quote each --junit pattern" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_reaches_the_command_and_nothing_is_uploaded(
    server: FakeFlakeGuard, tmp_path: Path
) -> None:
    script = (
        "import os, time\n"
        "os.makedirs('reports', exist_ok=True)\n"
        "open('reports/junit.xml', 'w').write('<testsuite/>')\n"
        "open('ready', 'w').close()\n"
        "time.sleep(30)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "flakeguard_client", "run", "--junit", "reports/*.xml",
         *RUN_METADATA, "--", sys.executable, "-c", script],
        env=server_env(server.url), cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 128 + signal.SIGTERM
    assert "interrupted: not uploading; exit status 143" in stderr
    assert server.requests == []
