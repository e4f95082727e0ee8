from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from fakeserver import REPO, TOKEN, FakeFlakeGuard

SRC = Path(__file__).resolve().parents[1] / "src"

# Variables that would make the client detect a CI or use a proxy: the tests
# set what they need themselves, wherever they run.
_SCRUBBED_PREFIXES = (
    "GITHUB_",
    "GITLAB_",
    "CI_",
    "BUILDKITE",
    "CIRCLE",
    "JENKINS_",
    "FLAKEGUARD_",
    "GIT_",
    "CHANGE_",
    "PYTEST_ADDOPTS",
    "PYTEST_PLUGINS",
    "DJANGO_SETTINGS_MODULE",
)
_SCRUBBED = {
    "CIRCLECI",
    "BUILD_NUMBER",
    "BRANCH_NAME",
    "JOB_NAME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIXES)
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@pytest.fixture
def server() -> Iterator[FakeFlakeGuard]:
    fake = FakeFlakeGuard().start()
    yield fake
    fake.stop()


@pytest.fixture
def closed_port_url() -> str:
    # A port that was just free: nothing listens there, so connecting is refused.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def server_env(url: str, **extra: str) -> dict[str, str]:
    settings = {"FLAKEGUARD_URL": url, "FLAKEGUARD_TOKEN": TOKEN, "FLAKEGUARD_REPO": REPO}
    return clean_env(**(settings | extra))


def flakeguard(
    args: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real command line, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "flakeguard_client", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


SHA = "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39"
RUN_METADATA = ["--run-id", "812", "--sha", SHA, "--branch", "main", "--event", "push"]
