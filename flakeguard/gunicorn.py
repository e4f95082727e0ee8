"""gunicorn's configuration for the web pods: ``gunicorn --config python:flakeguard.gunicorn``.

Besides bind address and workers, it sets up prometheus_client's
multiprocess mode: each gunicorn worker counts requests in files of
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics``, whichever worker answers it,
reports the sum, instead of one process's share.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
# Long enough for a large upload streamed to a temporary file.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
# gunicorn's own access log stays off: requests are logged by the app, in JSON.
accesslog = None
errorlog = "-"
# One process's view of its peers: the master sets the folder before it forks.
_folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if not _folder:
    _folder = tempfile.mkdtemp(prefix="flakeguard-web-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _folder
Path(_folder).mkdir(parents=True, exist_ok=True)
for _stale in Path(_folder).glob("*.db"):
    _stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
