"""`make up` / `make down`: the production-shaped stack on one machine starts healthy and stops clean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO_ROOT
from tests.processes import free_port

pytestmark = pytest.mark.pipeline


def stack(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["scripts/stack.sh", command],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_up_starts_every_process_healthy_and_down_stops_them_all(tmp_path: Path) -> None:
    # PostgreSQL runs as its own user, which cannot enter pytest's private tmp_path.
    stack_dir = Path(tempfile.mkdtemp(prefix="flakeguard-stack-"))
    stack_dir.chmod(0o755)
    web, flower, metrics = free_port(), free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "STACK_DIR": str(stack_dir),
        "VENV_BIN": str(Path(sys.executable).parent),
        "WEB_PORT": str(web),
        "FLOWER_PORT": str(flower),
        "METRICS_PORT": str(metrics),
    }
    up = stack("up", env)
    try:
        assert up.returncode == 0, up.stderr + "".join(
            p.read_text()[-2000:] for p in (stack_dir / "logs").glob("*.log")
        )
        health = requests.get(f"http://127.0.0.1:{web}/health", timeout=10).json()
        settings = dict(line.split("=", 1) for line in (stack_dir / "env").read_text().splitlines())
        user, password = settings["FLOWER_BASIC_AUTH"].split(":", 1)
        flower_anonymous = requests.get(f"http://127.0.0.1:{flower}/", timeout=10).status_code
        flower_signed_in = requests.get(
            f"http://127.0.0.1:{flower}/", auth=(user, password), timeout=10
        ).status_code
        worker_metrics = requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).status_code
        probes = [
            subprocess.run(
                [sys.executable, "-m", "flakeguard.probe", "worker"],
                env={**os.environ, "FLAKEGUARD_HEARTBEAT_DIR": str(folder)},
                capture_output=True,
                text=True,
                cwd=REPO_ROOT,
            ).returncode
            for folder in sorted((stack_dir / "heartbeat").iterdir())
            if folder.name != "beat"
        ]
        pids = [int(p.read_text()) for p in (stack_dir / "run").glob("*.pid")]
    finally:
        down = stack("down", env)
        logs = {p.name: p.read_text()[-3000:] for p in (stack_dir / "logs").glob("*.log")}
        shutil.rmtree(stack_dir, ignore_errors=True)

    assert health["status"] == "ok", json.dumps(health, indent=2) + json.dumps(logs)
    workers = health["components"]["workers"]
    assert workers["queues_without_workers"] == [] and len(workers["seen"]) == 5
    assert (flower_anonymous, flower_signed_in) == (401, 200)
    assert worker_metrics == 200
    assert probes == [0] * 5
    assert down.returncode == 0, down.stderr
    assert len(pids) == 9  # web, five workers, Beat, Flower, Redis
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"process {pid} still runs"
    assert list((stack_dir / "run").glob("*.pid")) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{web}/health/live", timeout=5)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
