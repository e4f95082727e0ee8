"""The real processes of a deployment, started by tests: workers, Beat, Flower, gunicorn, Redis.

Each runs as a separate process against the test database, in its own process
group so that a test can stop, freeze (SIGSTOP) or kill it, and writes its log
to a file under the test's ``tmp_path`` that a failing assertion can show.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

from tests.conftest import REPO_ROOT

ALL_QUEUES = "runs-ingest,runs-analyze,tests-recompute,polling,scheduler"


def test_database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}:{s['PASSWORD'] or ''}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


test_database_url.__test__ = False  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def app_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What a process of the app gets: the test database, INFO logs, no shared folders."""
    return {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "LOG_LEVEL": "INFO",
        "FLAKEGUARD_METRICS_PORT": "0",
        "FLAKEGUARD_HEARTBEAT_DIR": str(tmp_path / f"heartbeat-{uuid.uuid4().hex[:8]}"),
        **extra,
    }


@contextmanager
def process(
    argv: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    ready: bytes | None,
    timeout: float = 60,
) -> Iterator[subprocess.Popen]:
    """Start ``argv``, wait until its log shows ``ready``, and stop the whole group at the end."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        if ready is not None:
            wait_for(
                lambda: ready in log_path.read_bytes() or proc.poll() is not None,
                timeout=timeout,
                what=f"{argv[2:5]} to start",
            )
            assert proc.poll() is None, log_path.read_text()
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


@contextmanager
def celery_worker(
    tmp_path: Path, *, queues: str = ALL_QUEUES, concurrency: int = 1, **extra_env: str
) -> Iterator[subprocess.Popen]:
    """A real worker process (prefork) on ``queues``, in its own process group."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / f"worker-{name}.log"
    argv = [
        sys.executable, "-m", "celery", "-A", "flakeguard", "worker",
        "-Q", queues, "-c", str(concurrency), "--pool", "prefork", "-l", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}@%h",
    ]  # fmt: skip
    with process(argv, env=app_env(tmp_path, **extra_env), log_path=log_path, ready=b"ready.") as p:
        p.log_path = log_path  # type: ignore[attr-defined]
        yield p


@contextmanager
def celery_beat(tmp_path: Path, **extra_env: str) -> Iterator[subprocess.Popen]:
    log_path = tmp_path / f"beat-{uuid.uuid4().hex[:8]}.log"
    argv = [sys.executable, "-m", "celery", "-A", "flakeguard", "beat", "-l", "INFO"]
    with process(
        argv, env=app_env(tmp_path, **extra_env), log_path=log_path, ready=b"Starting"
    ) as p:
        p.log_path = log_path  # type: ignore[attr-defined]
        yield p


@contextmanager
def gunicorn(tmp_path: Path, *, port: int, workers: int = 2, **extra_env: str) -> Iterator[str]:
    """The web as deployed: gunicorn with FlakeGuard's config; yields its base URL."""
    log_path = tmp_path / f"web-{port}.log"
    env = app_env(tmp_path, PORT=str(port), WEB_CONCURRENCY=str(workers), **extra_env)
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:flakeguard.gunicorn",
            "flakeguard.wsgi:application"]  # fmt: skip
    with process(argv, env=env, log_path=log_path, ready=b"Booting worker") as proc:
        proc.log_path = log_path  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url + "/health/live"), timeout=30, what="gunicorn to serve")
        yield url


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


class RedisServer:
    """A Redis of the test's own, which it can stop and start again on the same port."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path / f"redis-{self.port}"
        self.dir.mkdir()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed (make test installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        wait_for(lambda: self._pings(redis), timeout=10, what="redis to start")

    def _pings(self, redis) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def restart_postgresql() -> None:
    """``pg_ctl restart -m immediate`` of the suite's server: a crash and a start, as a failover."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        (data_dir,) = cursor.fetchone()
    connection.close()
    pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
    owner = pwd.getpwuid(os.stat(data_dir).st_uid).pw_name
    run_as = ["runuser", "-u", owner, "--"] if os.getuid() == 0 and owner != "root" else []
    log = os.path.join(os.path.dirname(data_dir), "server.log")  # the server's, not our pipe
    subprocess.run(
        [*run_as, pg_ctl, "-D", data_dir, "-l", log, "-m", "immediate", "-w", "-t", "60", "restart"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90,
    )  # fmt: skip


def scored_vs_stored() -> tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]]:
    """(results, failures) per test: as scored, and as counted from the analyzed runs' rows."""
    from analysis.models import TestScore
    from analysis.tallies import counted_in

    scores = list(TestScore.objects.values_list("test_id", "results", "failures"))
    # A score's results are what it stores plus what pending tallies add.
    tallied = counted_in(test_pk for test_pk, _, _ in scores)
    scored = {
        test_pk: (results + tallied.get(test_pk, (0, None))[0], failures)
        for test_pk, results, failures in scores
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.test_id, COUNT(*), COUNT(*) FILTER (WHERE r.outcome IN ('failed', 'error'))"
            " FROM ingest_testresult r JOIN ingest_workflowrun w ON w.id = r.run_id"
            " WHERE w.analyzed_at IS NOT NULL GROUP BY r.test_id"
        )
        stored = {test_pk: (results, failures) for test_pk, results, failures in cursor.fetchall()}
    return scored, stored
