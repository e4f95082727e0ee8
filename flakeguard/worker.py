"""What every Celery worker runs beside its tasks: heartbeat, queue pauses, metrics port.

- **Heartbeat.** A thread of the worker's main process rewrites the probe
  file (``flakeguard.probe``) every ``FLAKEGUARD_HEARTBEAT_SECONDS`` (5) and
  tells the shared cache the worker is alive, for ``/health``; the event loop
  stamps the time it last turned. The thread does the I/O, so a slow Redis
  never blocks the loop, and a stopped process stops both.
- **Pauses.** Each turn of the loop compares the queues an operator paused
  (``jobs.queue_control``) with what this worker consumes, and cancels or
  restarts its own consumers to match.
- **Metrics.** Pool children count jobs in files of ``PROMETHEUS_MULTIPROC_DIR``
  (prometheus_client's multiprocess mode); the main process serves their sum at
  ``/metrics`` on ``FLAKEGUARD_METRICS_PORT`` (9808; 0 turns it off).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from celery import bootsteps
from celery.signals import worker_init, worker_process_shutdown

logger = logging.getLogger(__name__)


def _setting(name: str, default: int) -> int:
    from flakeguard.env import env_int

    return env_int(name, default)


def _is_worker_command() -> bool:
    return "worker" in sys.argv[1:] and "celery" in " ".join(sys.argv[:2])


def prepare_worker_metrics() -> None:
    """Give this worker a fresh folder for its pool's metric files.

    prometheus_client picks its storage from the variable when it is
    imported, so this runs first thing in the worker. A folder kept from a
    previous run is emptied: counts of a process that no longer exists would
    otherwise be added in.
    """
    if not _is_worker_command() or _setting("FLAKEGUARD_METRICS_PORT", 9808) == 0:
        return
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        folder = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
            prefix="flakeguard-metrics-"
        )
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        # Imported already by a plugin of the celery command (Flower's): the
        # metrics created from now on, ours among them, must use the files.
        values.ValueClass = values.get_value_class()


@worker_init.connect
def _serve_metrics(**kwargs: Any) -> None:
    port = _setting("FLAKEGUARD_METRICS_PORT", 9808)
    if port == 0 or "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    try:
        start_http_server(
            port, addr=os.environ.get("FLAKEGUARD_METRICS_ADDR", "0.0.0.0"), registry=registry
        )
    except OSError as exc:
        # Two workers on one machine: the second runs without an exporter
        # rather than not at all. Give each its own FLAKEGUARD_METRICS_PORT.
        logger.warning("worker metrics not served on port %s: %s", port, exc)
        return
    logger.info("worker metrics on :%s/metrics", port)


@worker_process_shutdown.connect
def _forget_pool_child(pid: int | None = None, **kwargs: Any) -> None:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


class WorkerHeartbeat(bootsteps.StartStopStep):
    """A consumer step: started when the worker consumes, stopped while it reconnects."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self.interval = _setting("FLAKEGUARD_HEARTBEAT_SECONDS", 5)
        self.hostname = c.hostname
        # The queues given with -Q, before any pause deselects one.
        self.own_queues = sorted(c.app.amqp.queues.consume_from or c.app.amqp.queues)
        self.loop_at = time.time()
        self.broker = "connecting"
        self.paused: set[str] = set()
        self.cancelled: set[str] = set()
        self.timer_ref: Any = None
        self._stop = threading.Event()
        self._write()
        self.thread = threading.Thread(target=self._beat, name="flakeguard-heartbeat", daemon=True)
        self.thread.start()

    def start(self, c: Any) -> None:
        self.broker = "connected"
        self.loop_at = time.time()
        self.timer_ref = c.timer.call_repeatedly(self.interval, self._turn, (c,), priority=10)

    def stop(self, c: Any) -> None:
        self.broker = "reconnecting"
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    def shutdown(self, c: Any) -> None:
        self.stop(c)
        self._stop.set()

    def _turn(self, c: Any) -> None:
        """On the event loop: prove it turns, and follow the operator's pauses."""
        self.loop_at = time.time()
        for name in self.own_queues:
            if name in self.paused and name not in self.cancelled:
                c.cancel_task_queue(name)
                self.cancelled.add(name)
                logger.warning("queue %s paused by an operator: not consuming it", name)
            elif name not in self.paused and name in self.cancelled:
                c.add_task_queue(name)
                self.cancelled.discard(name)
                logger.warning("queue %s resumed: consuming it again", name)

    def _beat(self) -> None:
        while not self._stop.is_set():
            self._write()
            self._share()
            self._stop.wait(self.interval)

    def _write(self) -> None:
        # Imported here: ``python -m flakeguard.probe`` loads this module first
        # (through the package's Celery app) and must find the probe unloaded.
        from flakeguard import probe

        try:
            probe.write_heartbeat(
                "worker", loop_at=self.loop_at, broker=self.broker, hostname=self.hostname
            )
        except OSError as exc:
            logger.error("heartbeat file not written: %s", exc)

    def _share(self) -> None:
        from jobs import heartbeats
        from jobs.queue_control import paused_queues

        heartbeats.record_worker(self.hostname, self.own_queues)
        try:
            self.paused = paused_queues() & set(self.own_queues)
        except Exception as exc:  # keep the last known pauses while the cache is away
            logger.debug("paused queues unknown: %s", exc)
