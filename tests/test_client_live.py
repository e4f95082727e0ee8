"""The CI client against a live FlakeGuard: a quarantined failure keeps the build green.

A real server (pytest-django's live server on the test database), real pytest
sessions of a small project in subprocesses with the client's plugin, and the
``flakeguard run`` command; then the same projects with the server gone, which
must leave pytest's own exit status.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import flakeguard_client  # noqa: F401  (make install puts ./client in the virtualenv)
import pytest

from analysis.quarantines import quarantine_tests
from ingest.identity import test_identity
from ingest.models import Repository, TestCase, Upload
from ingest.tokens import create_token

REPO = "acme/live"
ONLY_QUARANTINED = """
def test_ok():
    assert True

def test_flaky():
    assert False, "times out on the shared runner"
"""
ANOTHER_FAILURE = (
    ONLY_QUARANTINED
    + """
def test_broken():
    assert 1 == 2
"""
)


@pytest.fixture
def server(live_server) -> dict[str, str]:
    repository = Repository.objects.create(full_name=REPO)
    identity, classname, name, file = test_identity("test_sample", "", "test_flaky")
    test = TestCase.objects.create(
        repository=repository, identity=identity, classname=classname, name=name, file=file
    )
    quarantine_tests(tests=[test], created_by="lead", reason="runner timeouts", owner="team-ci")
    _, secret = create_token(repository=repository, scope="upload", name="ci")
    return {"FLAKEGUARD_URL": live_server.url, "FLAKEGUARD_TOKEN": secret, "FLAKEGUARD_REPO": REPO}


def project(tmp_path: Path, source: str) -> Path:
    folder = tmp_path / "project"
    folder.mkdir(parents=True)
    (folder / "test_sample.py").write_text(source)
    (folder / "pytest.ini").write_text("[pytest]\n")  # its own rootdir, not FlakeGuard's
    return folder


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def run(folder: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FLAKEGUARD_"))}
    return subprocess.run(
        command, cwd=folder, env={**clean, **env, "FLAKEGUARD_TIMEOUT": "5"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def pytest_session(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run(folder, env, sys.executable, "-m", "pytest", "-p", "no:django", "-p",
               "no:cacheprovider", "-q")  # fmt: skip


def flakeguard_run(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run(
        folder, env, sys.executable, "-m", "flakeguard_client", "run",
        "--run-id", "9001", "--sha", "f" * 40, "--branch", "main", "--job", "linux",
        "--junit", "report.xml", "--",
        sys.executable, "-m", "pytest", "-p", "no:django", "-p", "no:flakeguard", "-p",
        "no:cacheprovider", "-q", "--junitxml=report.xml",
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_pytest_with_only_a_quarantined_failure_exits_0(server, tmp_path: Path) -> None:
    done = pytest_session(project(tmp_path, ONLY_QUARANTINED), server)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "QUARANTINED" in done.stdout or "quarantined" in done.stdout
    assert "test_flaky" in done.stdout + done.stderr


@pytest.mark.django_db(transaction=True)
def test_pytest_with_a_failure_that_is_not_quarantined_exits_1(server, tmp_path: Path) -> None:
    done = pytest_session(project(tmp_path, ANOTHER_FAILURE), server)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "test_broken" in done.stdout


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("source", "pytest_status"), [(ONLY_QUARANTINED, 1), (ANOTHER_FAILURE, 1)])
def test_with_the_server_gone_pytest_keeps_its_own_status(
    server, tmp_path: Path, source: str, pytest_status: int
) -> None:
    gone = {**server, "FLAKEGUARD_URL": closed_port_url()}
    done = pytest_session(project(tmp_path, source), gone)

    assert done.returncode == pytest_status, done.stdout + done.stderr
    assert "flakeguard" in (done.stdout + done.stderr).lower()  # it says why nothing was forgiven


@pytest.mark.django_db(transaction=True)
def test_flakeguard_run_uploads_and_forgives_only_quarantined_failures(
    server, tmp_path: Path
) -> None:
    green = flakeguard_run(project(tmp_path, ONLY_QUARANTINED), server)
    red = flakeguard_run(project(tmp_path / "b", ANOTHER_FAILURE), server)
    offline = flakeguard_run(
        project(tmp_path / "c", ONLY_QUARANTINED), {**server, "FLAKEGUARD_URL": closed_port_url()}
    )

    assert green.returncode == 0, green.stdout + green.stderr
    assert "forgiven" in green.stderr and "test_flaky" in green.stderr
    assert red.returncode == 1, red.stderr
    assert offline.returncode == 1, offline.stderr  # pytest's status, untouched
    upload = Upload.objects.get(repository__full_name=REPO, run_id=9001)
    assert upload.files and upload.files[0]["bytes"] > 0
