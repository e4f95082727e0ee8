"""What job attempts did, counted in the process that ran them.

Workers run jobs in pool children: with ``PROMETHEUS_MULTIPROC_DIR`` set (every
deployment, see ``flakeguard.worker_metrics``), each child writes its counts to
files in that folder and the worker's exporter serves their sum. The state of
the job table (pending, dead, oldest due) is read at scrape time instead, by
``jobs.state_metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Attempt outcomes: succeeded, retried (transient failure, attempts left),
# dead, paused (ContinueLater), skipped (not claimable: done, running
# elsewhere, not due), lease_lost (a later claim owns it).
JOBS_PROCESSED = Counter(
    "flakeguard_jobs_processed",
    "Job attempts by kind and outcome",
    ["kind", "outcome"],
)
JOB_DURATION = Histogram(
    "flakeguard_job_duration_seconds",
    "Time a claimed job attempt ran, by kind",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800),
)
JOB_RETRIES = Counter(
    "flakeguard_job_retries",
    "Attempts that failed transiently and were scheduled again, by kind and error class",
    ["kind", "error"],
)
JOBS_IN_PROGRESS = Gauge(
    "flakeguard_jobs_in_progress",
    "Job attempts running now, by kind",
    ["kind"],
    multiprocess_mode="livesum",
)
