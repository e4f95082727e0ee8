"""The pytest plugin, in real pytest subprocesses on small generated projects."""

import subprocess
import sys
import textwrap
import time
from importlib import metadata
from pathlib import Path

import pytest
from conftest import clean_env, server_env
from fakeserver import FakeFlakeGuard

from flakeguard_client.junit import read_reports

SHOP = """
    import pytest

    def test_ok():
        pass

    def test_flaky():
        assert 1 + 1 == 3

    class TestCart:
        @pytest.mark.parametrize("n", [1, 2])
        def test_add(self, n):
            assert n == 1
"""

QUARANTINED = [("tests.test_shop", "test_flaky"), ("tests.test_shop.TestCart", "test_add[2]")]

installed = pytest.mark.skipif(
    not any(ep.name == "flakeguard" for ep in metadata.entry_points(group="pytest11")),
    reason="flakeguard-client is not installed (pip install -e ./client)",
)


def project(tmp_path: Path, source: str = SHOP, extra: dict[str, str] | None = None) -> Path:
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    # Third-party plugins of the environment are kept out: they slow each run
    # down and are not what these tests are about.
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:django -p no:faker\n")
    (root / "tests" / "test_shop.py").write_text(textwrap.dedent(source))
    for name, text in (extra or {}).items():
        (root / "tests" / name).write_text(textwrap.dedent(text))
    return root


def pytest_run(
    root: Path, env: dict[str, str], *args: str, plugin: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-rA",
        "--junitxml=junit.xml",
        *args,
    ]
    if plugin:
        command[3:3] = ["-p", "flakeguard_client.pytest_plugin"]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=60)


def quarantine_shop(server: FakeFlakeGuard) -> None:
    for classname, name in QUARANTINED:
        server.quarantine(classname, name, reason="races the cache", owner="bob")


def test_only_quarantined_failures_pass(server: FakeFlakeGuard, tmp_path: Path) -> None:
    quarantine_shop(server)
    root = project(tmp_path)
    result = pytest_run(root, server_env(server.url), "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "tests/test_shop.py::test_flaky QUARANTINED" in out
    assert "tests/test_shop.py::TestCart::test_add[2] QUARANTINED" in out
    assert "2 passed, 2 quarantined" in out
    assert "flakeguard" in out and "every failure is a quarantined test: exit status 0" in out
    assert "QUARANTINED tests/test_shop.py::test_flaky - races the cache (owner: bob)" in out
    # The server must still see the failures: the JUnit report keeps them, and
    # the keys the plugin matched are the ones the server computes from it.
    [report] = read_reports(root / "junit.xml")
    assert sorted(t.display for t in report.failed) == [
        "tests.test_shop.TestCart::test_add[2]",
        "tests.test_shop::test_flaky",
    ]
    quarantined_keys = {q["test_key"] for q in server.quarantines["acme/shop"]}
    assert {t.key for t in report.failed} == quarantined_keys


def test_quiet_output_shows_q(server: FakeFlakeGuard, tmp_path: Path) -> None:
    quarantine_shop(server)
    result = pytest_run(project(tmp_path), server_env(server.url), "-q")
    assert result.returncode == 0, result.stdout
    assert ".Q.Q" in result.stdout


def test_a_failure_that_is_not_quarantined_fails(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.quarantine("tests.test_shop", "test_flaky")
    result = pytest_run(project(tmp_path), server_env(server.url))
    assert result.returncode == 1
    assert "1 failed, 2 passed, 1 quarantined" in result.stdout
    assert "1 failure(s) not quarantined: exit status unchanged" in result.stdout


def test_junit_prefix_is_part_of_the_key(server: FakeFlakeGuard, tmp_path: Path) -> None:
    server.quarantine("linux.tests.test_shop", "test_flaky")
    server.quarantine("linux.tests.test_shop.TestCart", "test_add[2]")
    result = pytest_run(project(tmp_path), server_env(server.url), "--junitprefix", "linux")
    assert result.returncode == 0, result.stdout


def test_errors_in_setup_of_a_quarantined_test_are_forgiven(
    server: FakeFlakeGuard, tmp_path: Path
) -> None:
    server.quarantine("tests.test_shop", "test_needs_db")
    source = """
        import pytest

        @pytest.fixture
        def db():
            raise ConnectionError("db is down")

        def test_needs_db(db):
            pass
    """
    result = pytest_run(project(tmp_path, source), server_env(server.url))
    assert result.returncode == 0, result.stdout
    assert "(in setup)" in result.stdout


@pytest.mark.parametrize("case", ["closed port", "500", "hang"])
def test_the_server_failing_leaves_pytest_alone(
    server: FakeFlakeGuard, closed_port_url: str, tmp_path: Path, case: str
) -> None:
    quarantine_shop(server)
    url = closed_port_url if case == "closed port" else server.url
    server.mode = {"500": "500", "hang": "hang"}.get(case)
    started = time.monotonic()
    result = pytest_run(project(tmp_path), server_env(url, FLAKEGUARD_TIMEOUT="1"))
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "2 failed, 2 passed" in result.stdout
    warnings = [line for line in result.stdout.splitlines() if "flakeguard" in line]
    assert len(warnings) == 1, result.stdout
    expected = {
        "closed port": f"cannot reach {closed_port_url}: connection refused",
        "500": "answered HTTP 500",
        "hang": f"no answer from {server.url} within 1 s (--timeout)",
    }[case]
    assert warnings[0].startswith("flakeguard: nothing will be forgiven: ")
    assert expected in warnings[0]
    assert elapsed < 10


def test_collection_errors_are_never_forgiven(server: FakeFlakeGuard, tmp_path: Path) -> None:
    quarantine_shop(server)
    root = project(tmp_path, extra={"test_broken.py": "import no_such_module_xyz\n"})
    result = pytest_run(root, server_env(server.url), "--continue-on-collection-errors")
    assert result.returncode == 1
    assert "collection or internal errors: exit status unchanged" in result.stdout


def test_a_session_stopped_early_is_never_forgiven(server: FakeFlakeGuard, tmp_path: Path) -> None:
    quarantine_shop(server)
    result = pytest_run(project(tmp_path), server_env(server.url), "-x")
    assert result.returncode == 1
    assert "the session stopped early: exit status unchanged" in result.stdout


def test_inert_without_flakeguard_url(server: FakeFlakeGuard, tmp_path: Path) -> None:
    quarantine_shop(server)
    result = pytest_run(project(tmp_path), clean_env(), plugin=False)
    assert result.returncode == 1
    assert "flakeguard:" not in result.stdout
    assert "= flakeguard =" not in result.stdout
    assert server.requests == []


@installed
def test_loaded_through_the_entry_point(server: FakeFlakeGuard, tmp_path: Path) -> None:
    quarantine_shop(server)
    result = pytest_run(project(tmp_path), server_env(server.url), plugin=False)
    assert result.returncode == 0, result.stdout


@installed
def test_disabled_with_no_flakeguard(server: FakeFlakeGuard, tmp_path: Path) -> None:
    quarantine_shop(server)
    result = pytest_run(
        project(tmp_path), server_env(server.url), "-p", "no:flakeguard", plugin=False
    )
    assert result.returncode == 1
    assert server.requests == []
