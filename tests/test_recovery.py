"""Recovery in seconds: killed workers, a PostgreSQL restart, a Redis restart, a long GitHub outage.

Real workers, Beat, PostgreSQL and Redis; each test breaks one thing the way
it breaks in production and checks that every job finishes, exactly once,
within a minute of the fault, and that the command waiting on them says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
import redis
from django.utils import timezone

from ingest.models import TestResult, WorkflowRun
from ingest.runs import RunFile, RunInfo
from ingest.services import enqueue_run_import
from jobs.errors import TransientJobError
from jobs.models import Job, JobState
from jobs.runner import run_job
from tests.conftest import REPO_ROOT
from tests.factories import JobFactory
from tests.ingest.junit_samples import pytest_report, write
from tests.processes import (
    app_env,
    celery_beat,
    celery_worker,
    redis_server,
    restart_postgresql,
    wait_for,
)

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]

RECOVERY_SECONDS = 60


@pytest.fixture(autouse=True)
def clean_broker(redis_url: str) -> None:
    redis.Redis.from_url(redis_url).flushdb()


def big_run(tmp_path: Path, run_id: int, size: int = 300_000) -> tuple[RunInfo, list[RunFile]]:
    cases = [(f"tests.test_mod{n % 100}", f"test_{n}", "failed" if n % 13 == 0 else "passed")
             for n in range(size)]  # fmt: skip
    report = write(tmp_path / f"run-{run_id}" / "junit.xml", pytest_report(cases))
    run = RunInfo(
        repo="acme/shop", run_id=run_id, run_attempt=1, sha=f"{run_id:040x}", branch="main",
        event="push", workflow="ci", started_at=datetime(2026, 9, 2, tzinfo=UTC),
    )  # fmt: skip
    return run, [RunFile(path=report)]


def running(job_pk: int) -> bool:
    return Job.objects.get(pk=job_pk).state == JobState.RUNNING


def pool_children(worker: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(worker.pid).children(recursive=True)


# --- killed workers ---------------------------------------------------------------


def test_a_job_whose_whole_worker_was_killed_runs_again_within_a_minute(tmp_path: Path) -> None:
    run, files = big_run(tmp_path, 900)
    with celery_beat(tmp_path), celery_worker(tmp_path) as doomed:
        job, _ = enqueue_run_import(run=run, files=files)
        wait_for(lambda: running(job.pk), timeout=30, what="the worker to claim the job")
        time.sleep(0.5)  # into parsing and COPY, far from the commit
        os.killpg(doomed.pid, signal.SIGKILL)  # the node is gone: no worker to requeue it
        killed_at = time.monotonic()
        doomed.wait()
        with celery_worker(tmp_path):
            wait_for(lambda: Job.objects.get(pk=job.pk).attempts == 2, timeout=RECOVERY_SECONDS,
                     what="another worker to take the job over")  # fmt: skip
            taken_over_after = time.monotonic() - killed_at
            wait_for(lambda: Job.objects.get(pk=job.pk).state == JobState.SUCCEEDED, timeout=180,
                     what="the job to finish")  # fmt: skip

    assert taken_over_after < RECOVERY_SECONDS
    assert WorkflowRun.objects.count() == 1
    assert TestResult.objects.count() == 300_000


def test_a_killed_pool_child_gets_its_job_back_through_the_redelivered_message(
    tmp_path: Path,
) -> None:
    # No Beat, so no sweeper: only the message Celery requeues brings the job back.
    run, files = big_run(tmp_path, 901)
    with celery_worker(tmp_path) as worker:
        job, _ = enqueue_run_import(run=run, files=files)
        wait_for(lambda: running(job.pk), timeout=30, what="the worker to claim the job")
        time.sleep(0.5)
        [child] = pool_children(worker)
        child.kill()
        killed_at = time.monotonic()
        wait_for(lambda: Job.objects.get(pk=job.pk).attempts == 2, timeout=RECOVERY_SECONDS,
                 what="the job to run again")  # fmt: skip
        back_after = time.monotonic() - killed_at
        wait_for(lambda: Job.objects.get(pk=job.pk).state == JobState.SUCCEEDED, timeout=180,
                 what="the job to finish")  # fmt: skip
        log = worker.log_path.read_text()

    assert back_after < RECOVERY_SECONDS
    assert "held by another claim; checking again" in log
    assert TestResult.objects.count() == 300_000


# --- PostgreSQL restarted ------------------------------------------------------------


def manifest_of(tmp_path: Path, runs: int, tests: int = 2000) -> Path:
    lines = []
    for i in range(runs):
        cases = [(f"tests.test_mod{n % 7}", f"test_{n}", "failed" if (n + i) % 11 == 0 else "passed")
                 for n in range(tests)]  # fmt: skip
        write(tmp_path / f"m{i}" / "junit.xml", pytest_report(cases))
        lines.append(json.dumps({
            "repo": "acme/shop", "run_id": 1000 + i, "run_attempt": 1, "sha": f"{i:040x}",
            "branch": "main", "event": "push", "workflow": "ci",
            "started_at": (datetime(2026, 9, 1, tzinfo=UTC) + timedelta(hours=i)).isoformat(),
            "files": [f"m{i}/junit.xml"],
        }))  # fmt: skip
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_after_a_postgresql_restart_queued_work_resumes_and_the_command_prints_its_summary(
    tmp_path: Path,
) -> None:
    runs = 30
    manifest = manifest_of(tmp_path, runs)
    with celery_beat(tmp_path), celery_worker(tmp_path, concurrency=2):
        command = subprocess.Popen(
            [sys.executable, "manage.py", "ingest_junit", "--manifest", str(manifest), "--json"],
            cwd=REPO_ROOT, env=app_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        wait_for(lambda: Job.objects.filter(state=JobState.SUCCEEDED).count() >= 3, timeout=60,
                 what="the import to be under way")  # fmt: skip
        restart_postgresql()
        restarted_at = time.monotonic()
        out, err = command.communicate(timeout=240)
        finished_after = time.monotonic() - restarted_at
        wait_for(lambda: not Job.objects.exclude(state=JobState.SUCCEEDED).exists(), timeout=120,
                 what="the analyses")  # fmt: skip

    assert command.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["runs_imported"] == runs and summary["results_stored"] == runs * 2000
    assert WorkflowRun.objects.count() == runs
    assert TestResult.objects.count() == runs * 2000  # nothing twice
    assert not Job.objects.filter(state=JobState.DEAD).exists()
    assert finished_after < RECOVERY_SECONDS + 60  # the rest of the import included


# --- Redis restarted ---------------------------------------------------------------


def test_after_a_redis_restart_that_lost_the_queues_work_resumes_within_a_minute(
    tmp_path: Path,
) -> None:
    runs = 20
    manifest = manifest_of(tmp_path, runs, tests=500)
    with redis_server(tmp_path) as broker:
        env = app_env(tmp_path, REDIS_URL=broker.url)
        # Queued while no worker runs: every message waits in Redis.
        command = subprocess.Popen(
            [sys.executable, "manage.py", "ingest_junit", "--manifest", str(manifest), "--json"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(lambda: Job.objects.filter(kind="ingest_run").count() == runs, timeout=60,
                 what="the jobs to be queued")  # fmt: skip
        wait_for(lambda: redis.Redis.from_url(broker.url).llen("runs-ingest") == runs, timeout=30,
                 what="their messages")  # fmt: skip
        with celery_beat(tmp_path, REDIS_URL=broker.url):
            time.sleep(2)  # Beat's first sweep has seen this Redis
            broker.stop()
            broker.start()  # without its data: the messages are gone
            restarted_at = time.monotonic()
            assert redis.Redis.from_url(broker.url).llen("runs-ingest") == 0
            with celery_worker(tmp_path, REDIS_URL=broker.url):
                wait_for(
                    lambda: Job.objects.exclude(state=JobState.PENDING).exists(),
                    timeout=RECOVERY_SECONDS, what="the first job to run again",
                )  # fmt: skip
                resumed_after = time.monotonic() - restarted_at
                wait_for(
                    lambda: not Job.objects.exclude(state=JobState.SUCCEEDED).exists(),
                    timeout=120, what="every job to finish",
                )  # fmt: skip
                out, err = command.communicate(timeout=60)

    assert command.returncode == 0, err[-3000:]
    assert json.loads(out)["runs_imported"] == runs
    assert TestResult.objects.count() == runs * 500
    assert resumed_after < RECOVERY_SECONDS


# --- a long GitHub outage -----------------------------------------------------------


@pytest.mark.django_db
def test_a_two_hour_outage_of_a_remote_leaves_no_job_dead(settings) -> None:
    """The runner's own backoff, with time moved on by each retry's delay instead of waited."""
    job = JobFactory(max_attempts=settings.FLAKEGUARD_JOB_MAX_ATTEMPTS, dispatched_at=None)
    started = clock = timezone.now()
    outage_ends = started + timedelta(hours=2)

    def github(job: Job) -> dict:
        if clock < outage_ends:
            raise TransientJobError("GitHub unreachable: connection refused")
        return {"ok": True}

    while True:
        run_job(job.pk, github)
        job.refresh_from_db()
        if job.state != JobState.PENDING:
            break
        clock += job.next_attempt_at - timezone.now()  # the delay the runner chose, passed
        Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())

    assert job.state == JobState.SUCCEEDED, job.last_error
    assert clock - started >= timedelta(hours=2)
    assert job.attempts < settings.FLAKEGUARD_JOB_MAX_ATTEMPTS
