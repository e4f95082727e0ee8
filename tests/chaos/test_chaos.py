"""The chaos suite (``make chaos``): a few hundred runs imported through the broker while things break.

Real gunicorn, two Celery workers, Beat, PostgreSQL and Redis, and the fake
GitHub. Webhooks for every run attempt arrive over HTTP, some ten times at
once and some re-run attempts before their first; meanwhile workers are
SIGKILLed (whole and pool children, while ingest, analysis and check-run
publishing jobs run), Redis is killed and restarted empty, PostgreSQL is
stopped with ``-m immediate`` and started, and GitHub answers 5xx bursts,
timeouts, broken-off downloads and secondary rate limits. A delivery GitHub
saw fail is delivered again, as GitHub's own redelivery would.

Pass: nothing lost, nothing duplicated, nothing dead or left pending, every
test scored from every stored run exactly once, and one check run per commit.
The counts and the time to drain after the last fault are printed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
import requests
from django.db import close_old_connections, connection
from django.utils import timezone

from ingest.models import TestResult, WorkflowRun
from jobs.models import Job, JobKind, JobState
from polling.models import CheckRun
from polling.repositories import add_repository
from tests.conftest import FAKE_GITHUB_TOKEN
from tests.github_fake import FakeGitHub, junit_zip
from tests.ingest.junit_samples import pytest_report
from tests.processes import (
    celery_beat,
    celery_worker,
    free_port,
    gunicorn,
    redis_server,
    restart_postgresql,
    scored_vs_stored,
    wait_for,
)

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

REPO = "acme/chaos"
SECRET = "chaos-webhook-secret"
RUNS = int(os.environ.get("CHAOS_RUNS", "200"))
RERUNS = RUNS // 5  # runs with a second attempt, delivered before the first
TESTS = 60
SEED = int(os.environ.get("CHAOS_SEED", "20261202"))
# The system under test, tuned for a ten-minute window: retries after seconds,
# not minutes (the schedule's shape is what the suite exercises, not its scale).
ENV = {
    "FLAKEGUARD_JOB_BACKOFF_BASE_SECONDS": "2",
    "FLAKEGUARD_JOB_BACKOFF_MAX_SECONDS": "20",
    "GITHUB_TIMEOUT_SECONDS": "3",
    "GITHUB_RETRIES": "1",
    "FLAKEGUARD_HEARTBEAT_SECONDS": "2",
    # The sweeper's last resort for a message lost some way no other path
    # catches: 2 minutes here instead of 10, inside the suite's window.
    "FLAKEGUARD_JOB_REDISPATCH_SECONDS": "120",
}


@dataclass
class Fault:
    at: float
    what: str
    act: Callable[[], None]


@dataclass
class Log:
    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        line = f"[chaos {time.monotonic() - self.started:6.1f}s] {text}"
        self.lines.append(line)
        print(line, flush=True)


def outcome(run: int, attempt: int, test: int) -> str:
    """Deterministic results: a few always-failing tests, some flaky ones, the rest green."""
    if test < 2:
        return "failed"  # broken
    if test < 8 and (run * 31 + attempt * 7 + test * 13) % 5 == 0:
        return "failed"  # flaky
    return "passed"


def report(run: int, attempt: int) -> bytes:
    cases = [("tests.test_chaos", f"test_{t}", outcome(run, attempt, t)) for t in range(TESTS)]
    return junit_zip({"junit.xml": pytest_report(cases)})


def payload(run_id: int, attempt: int, started: datetime) -> dict:
    stamp = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "action": "completed",
        "workflow_run": {
            "id": run_id, "name": "ci", "run_attempt": attempt, "status": "completed",
            "conclusion": "failure", "head_sha": f"{run_id:040x}", "head_branch": "main",
            "event": "push", "created_at": stamp, "run_started_at": stamp, "updated_at": stamp,
        },
        "repository": {"full_name": REPO, "default_branch": "main"},
    }  # fmt: skip


def signed(body: dict, delivery: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {
        "X-GitHub-Event": "workflow_run",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256="
        + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }


def deliver(url: str, body: dict, delivery: str, log: Log) -> None:
    """POST until the web says 2xx, as GitHub redelivers a failed delivery."""
    raw, headers = signed(body, delivery)
    for attempt in range(60):
        try:
            answer = requests.post(f"{url}/webhooks/github", data=raw, headers=headers, timeout=30)
            if answer.status_code < 300:
                return
        except requests.RequestException:
            pass
        time.sleep(min(5.0, 0.5 * (attempt + 1)))
    log.say(f"delivery {delivery} never accepted")
    raise AssertionError(f"delivery {delivery} was never accepted")


def kill_pool_children(workers: list, log: Log, why: str) -> None:
    killed = 0
    for worker in workers:
        try:
            for child in psutil.Process(worker.pid).children(recursive=True):
                child.kill()
                killed += 1
        except psutil.NoSuchProcess:
            continue
    log.say(f"SIGKILL {killed} pool children ({why})")


def when_running(kind: str, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Job.objects.filter(kind=kind, state=JobState.RUNNING).exists():
                return True
        except Exception:
            close_old_connections()
        time.sleep(0.05)
    return False


def test_nothing_is_lost_or_duplicated_whatever_breaks(
    tmp_path: Path, fake_github: FakeGitHub, settings
) -> None:
    rng = random.Random(SEED)
    log = Log()
    github = fake_github
    settings.GITHUB_WEBHOOK_SECRET = [SECRET]
    add_repository(full_name=REPO, backfill=False)
    base = datetime.now(UTC) + timedelta(seconds=5)  # completed after the repository was followed

    attempts: list[tuple[int, int, datetime]] = []
    for n in range(RUNS):
        run_id = 70_000 + n
        started = base + timedelta(seconds=n)
        github.add_run(REPO, run_id=run_id, sha=f"{run_id:040x}", started_at=started)
        github.add_artifact(REPO, run_id, "junit-linux", report(run_id, 1), created_at=started)
        attempts.append((run_id, 1, started))
    for n in rng.sample(range(RUNS), RERUNS):
        run_id = 70_000 + n
        again = base + timedelta(seconds=n, minutes=30)
        github.add_run(REPO, run_id=run_id, attempt=2, sha=f"{run_id:040x}", started_at=again)
        github.add_artifact(REPO, run_id, "junit-linux-2", report(run_id, 2), created_at=again)
        attempts.append((run_id, 2, again))
    expected = {(run_id, attempt) for run_id, attempt, _ in attempts}
    log.say(f"{RUNS} runs, {len(expected)} attempts of {TESTS} tests; seed {SEED}")

    with ExitStack() as stack:
        broker = stack.enter_context(redis_server(tmp_path))
        env = {
            **ENV,
            "REDIS_URL": broker.url,
            "GITHUB_API_URL": github.api_url,
            "GITHUB_TOKEN": FAKE_GITHUB_TOKEN,
            "GITHUB_WEBHOOK_SECRET": SECRET,
        }
        url = stack.enter_context(gunicorn(tmp_path, port=free_port(), workers=2, **env))
        stack.enter_context(celery_beat(tmp_path, **env))
        workers = [
            stack.enter_context(celery_worker(tmp_path, concurrency=2, **env)) for _ in range(2)
        ]
        replacements: list = []

        def kill_whole_worker() -> None:
            victim = workers.pop(rng.randrange(len(workers)))
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            log.say(f"SIGKILL worker {victim.pid} (the whole worker)")
            fresh = stack.enter_context(celery_worker(tmp_path, concurrency=2, **env))
            workers.append(fresh)
            replacements.append(fresh)
            log.say(f"worker {fresh.pid} started in its place")

        def kill_during(kind: str) -> Callable[[], None]:
            def act() -> None:
                if when_running(kind):
                    kill_pool_children(workers, log, f"while a {kind} job ran")
                else:
                    log.say(f"no {kind} job seen running; pool children left alone")

            return act

        def restart_redis() -> None:
            broker.stop()
            log.say("Redis killed")
            time.sleep(3)
            broker.start()
            log.say("Redis started again, empty")

        def restart_postgres() -> None:
            restart_postgresql()
            close_old_connections()
            log.say("PostgreSQL stopped -m immediate and started")

        faults = [
            Fault(4, "5xx burst", lambda: github.fail_next(r"/artifacts$", 502, times=12)),
            Fault(6, "kill during ingest", kill_during(JobKind.INGEST_RUN)),
            Fault(10, "timeouts", lambda: github.delay_next(r"/artifacts$", 5, times=6)),
            Fault(14, "kill a worker", kill_whole_worker),
            Fault(18, "broken-off downloads", lambda: github.truncate_next(r"^/blobs/", times=8)),
            Fault(22, "kill during analysis", kill_during(JobKind.ANALYZE_RUN)),
            Fault(26, "Redis restart", restart_redis),
            Fault(
                34,
                "secondary rate limits",
                lambda: github.fail_next(
                    r"/check-runs", 403, times=6, headers={"Retry-After": "1"}
                ),
            ),
            Fault(38, "kill during publishing", kill_during(JobKind.VERDICTS_CHANGED)),
            Fault(44, "PostgreSQL restart", restart_postgres),
            Fault(52, "kill a worker", kill_whole_worker),
            Fault(
                56,
                "5xx burst on check runs",
                lambda: github.fail_next(r"/check-runs", 500, times=8),
            ),
        ]

        def run_faults() -> None:
            for fault in faults:
                time.sleep(max(0.0, fault.at - (time.monotonic() - log.started)))
                log.say(f"fault: {fault.what}")
                fault.act()

        chaos = threading.Thread(target=run_faults, name="chaos")
        chaos.start()

        # Deliveries over the first minute: re-runs before their first attempt,
        # every fifth run's webhook ten times at once.
        order = sorted(attempts, key=lambda a: (a[0], -a[1]))
        per_second = len(order) / 50
        with ThreadPoolExecutor(max_workers=12) as pool:
            for run_id, attempt, started in order:
                body = payload(run_id, attempt, started)
                delivery = str(uuid.uuid4())
                copies = 10 if run_id % 5 == 0 and attempt == 1 else 1
                for _ in range(copies):
                    pool.submit(deliver, url, body, delivery, log)
                time.sleep(1 / per_second)
            pool.shutdown(wait=True)
        log.say(f"every delivery accepted ({len(order)} attempts)")
        chaos.join()
        last_fault = time.monotonic()
        log.say("last fault done; draining")

        def drained() -> bool:
            # Every webhook was accepted, so every ingest job exists; the jobs they
            # cause are queued before they finish. Nothing pending or running: done.
            try:
                return not Job.objects.filter(
                    state__in=[JobState.PENDING, JobState.RUNNING]
                ).exists()
            except Exception:
                close_old_connections()
                return False

        try:
            wait_for(drained, timeout=420, what="the system to drain")
        except AssertionError:
            import redis as redis_client

            client = redis_client.Redis.from_url(broker.url)
            log.say(
                f"queues: { {q: client.llen(q) for q in ('runs-ingest', 'runs-analyze', 'polling')} }"
                f", unacked {client.hlen('unacked')}"
            )
            for job in Job.objects.exclude(state__in=[JobState.SUCCEEDED, JobState.DEAD]):
                log.say(
                    f"stuck: job {job.pk} {job.kind} {job.state} attempts {job.attempts} "
                    f"due {job.next_attempt_at:%H:%M:%S} dispatched {job.dispatched_at} "
                    f"lease {job.lease_expires_at} now {timezone.now():%H:%M:%S} "
                    f"error {job.last_error[-300:]!r}"
                )
            raise
        drain_seconds = time.monotonic() - last_fault

    stored = set(WorkflowRun.objects.values_list("run_id", "run_attempt"))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT w.run_id, w.run_attempt, COUNT(r.*) FROM ingest_workflowrun w"
            " LEFT JOIN ingest_testresult r ON r.run_id = w.id GROUP BY w.run_id, w.run_attempt"
        )
        per_run = {(run_id, attempt): n for run_id, attempt, n in cursor.fetchall()}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT w.run_id, w.run_attempt, r.job, COUNT(*), w.file_errors::text"
            " FROM ingest_workflowrun w JOIN ingest_testresult r ON r.run_id = w.id"
            " GROUP BY w.run_id, w.run_attempt, r.job, w.file_errors::text"
        )
        by_job = cursor.fetchall()
    odd = {key for key, n in per_run.items() if n != TESTS}
    for run_id, attempt, job_label, n, errors in by_job:
        if (run_id, attempt) in odd:
            log.say(f"run {run_id} attempt {attempt}: {n} results from {job_label!r}; {errors}")
    for key in sorted(odd):
        log.say(f"run {key}: {per_run[key]} results")
    duplicated = sum(1 for n in per_run.values() if n > TESTS)
    short = sum(1 for n in per_run.values() if n < TESTS)
    dead = list(Job.objects.filter(state=JobState.DEAD).values_list("kind", "last_error"))
    unfinished = Job.objects.exclude(state__in=[JobState.SUCCEEDED, JobState.DEAD]).count()
    scored, counted = scored_vs_stored()
    mismatched = sum(1 for pk in counted if scored.get(pk) != counted[pk])
    check_runs = CheckRun.objects.count()
    shas = {f"{run_id:040x}" for run_id, _ in expected}
    posted = github.repo(REPO).check_runs
    posted_shas = [c["head_sha"] for c in posted.values()]

    log.say(
        f"expected {len(expected)} · stored {len(stored & expected)} · duplicated {duplicated} · incomplete {short} · dead {len(dead)} · unfinished {unfinished} · "
        f"tests scored {len(counted)} (mismatched {mismatched}) · check runs {check_runs} for {len(shas)} commits · drained {drain_seconds:.1f}s after "
        "the last fault"
    )  # fmt: skip
    assert stored == expected, sorted(expected - stored)[:10]
    assert duplicated == 0 and short == 0 and TestResult.objects.count() == len(expected) * TESTS
    assert dead == [], dead[:3]
    assert unfinished == 0
    assert len(counted) == TESTS and mismatched == 0
    assert check_runs == len(shas) and sorted(posted_shas) == sorted(shas)
