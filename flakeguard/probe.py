"""Liveness of workers and Beat: heartbeat files and the probe that reads them.

``python -m flakeguard.probe worker`` (or ``beat``) exits 0 while the process
beside it is alive and 1, saying why, when it is hung. It reads a small JSON
file the process rewrites every few seconds in ``FLAKEGUARD_HEARTBEAT_DIR``
(default ``/tmp/flakeguard-heartbeat``), so a probe costs no broker round trip
and a Redis blip never gets a healthy worker restarted:

- a worker's file is written by a thread of its main process, with the time
  its event loop last turned and whether it is connected to the broker. A
  file older than ``FLAKEGUARD_PROBE_MAX_AGE`` seconds (default 60) means the
  process is stopped or wedged; a loop that has not turned for as long while
  connected means the worker no longer takes messages. While it reconnects
  to the broker the loop is expected to wait, and that is healthy.
- Beat's is written on every scheduler tick (at most every 5 seconds).

The probe touches neither the broker nor the database, and sets up no Django.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

COMPONENTS = ("worker", "beat")


def heartbeat_dir() -> Path:
    return Path(os.environ.get("FLAKEGUARD_HEARTBEAT_DIR") or "/tmp/flakeguard-heartbeat")


def max_age() -> float:
    raw = os.environ.get("FLAKEGUARD_PROBE_MAX_AGE") or "60"
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(
            f"FLAKEGUARD_PROBE_MAX_AGE must be a number of seconds, got {raw!r}"
        ) from None


def write_heartbeat(component: str, **state: Any) -> None:
    """Replace ``component``'s heartbeat file in one rename, so a probe never reads half of it."""
    folder = heartbeat_dir()
    folder.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"pid": os.getpid(), "written_at": time.time(), **state})
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{component}-")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(body)
        os.replace(tmp, folder / f"{component}.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check(component: str, *, now: float | None = None) -> str | None:
    """None when ``component`` is alive, else what is wrong."""
    now = now or time.time()
    path = heartbeat_dir() / f"{component}.json"
    try:
        beat = json.loads(path.read_text())
    except FileNotFoundError:
        return f"no heartbeat at {path}: the {component} has not started"
    except (OSError, ValueError) as exc:
        return f"unreadable heartbeat {path}: {exc}"
    limit = max_age()
    age = now - float(beat.get("written_at", 0))
    if age > limit:
        return (
            f"{component} heartbeat is {age:.0f}s old (limit {limit:.0f}s): process hung or stopped"
        )
    if component == "worker" and beat.get("broker") == "connected":
        loop_age = now - float(beat.get("loop_at", 0))
        if loop_age > limit:
            return (
                f"worker event loop has not turned for {loop_age:.0f}s while connected "
                f"(limit {limit:.0f}s): it no longer takes messages"
            )
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMPONENTS:
        print(f"usage: python -m flakeguard.probe {'|'.join(COMPONENTS)}", file=sys.stderr)
        return 2
    problem = check(argv[0])
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
