"""Operations, tried as an operator would: real gunicorn, workers, Beat, Flower, Redis, PostgreSQL.

- one correlation id on every log line from a webhook delivery to its check run;
- worker metrics scraped from the worker's own port, matching what ran; web
  metrics summed over gunicorn's workers;
- the web stays ready with Redis stopped, and a webhook accepted then is
  processed once Redis is back;
- a hung worker fails its probe, a healthy one during a Redis blip does not;
  Beat's probe and its schedule in the database;
- a dead job is a failed task in Flower; a paused queue is not consumed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from jobs.models import Job, JobKind, JobState
from polling.models import CheckRun
from polling.repositories import add_repository
from tests.conftest import FAKE_GITHUB_TOKEN, REPO_ROOT
from tests.factories import JobFactory
from tests.github_fake import FakeGitHub, junit_zip
from tests.ingest.junit_samples import pytest_report
from tests.processes import (
    app_env,
    celery_beat,
    celery_worker,
    free_port,
    gunicorn,
    process,
    redis_server,
    wait_for,
)

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]

REPO = "acme/shop"
SECRET = "webhook-secret"
METRICS_TOKEN = "metrics-token-for-tests"


@pytest.fixture(autouse=True)
def clean_broker(redis_url: str) -> None:
    redis.Redis.from_url(redis_url).flushdb()


@pytest.fixture
def github(fake_github: FakeGitHub, settings) -> FakeGitHub:
    settings.GITHUB_WEBHOOK_SECRET = [SECRET]
    settings.FLAKEGUARD_METRICS_TOKEN = METRICS_TOKEN
    add_repository(full_name=REPO, backfill=False)
    return fake_github


def github_env(github: FakeGitHub) -> dict[str, str]:
    return {
        "GITHUB_API_URL": github.api_url,
        "GITHUB_TOKEN": FAKE_GITHUB_TOKEN,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_RETRIES": "1",
        "FLAKEGUARD_METRICS_TOKEN": METRICS_TOKEN,
    }


def a_completed_run(github: FakeGitHub, *, run_id: int, failing: int = 2, tests: int = 30) -> dict:
    sha = f"{run_id:040x}"
    run = github.add_run(REPO, run_id=run_id, sha=sha, conclusion="failure")
    cases = [("tests.test_shop", f"test_{n}", "failed" if n < failing else "passed")
             for n in range(tests)]  # fmt: skip
    github.add_artifact(REPO, run_id, "junit-linux", junit_zip({"junit.xml": pytest_report(cases)}))
    # Completed after the repository was followed, as a fresh run is.
    now = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "action": "completed",
        "workflow_run": {
            "id": run_id, "name": "ci", "run_attempt": 1, "status": "completed",
            "conclusion": "failure", "head_sha": sha, "head_branch": "main", "event": "push",
            "created_at": now, "run_started_at": now, "updated_at": now,
        },
        "repository": {"full_name": REPO, "default_branch": "main"},
        "_run": run,
    }  # fmt: skip


def signed(payload: dict) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({k: v for k, v in payload.items() if not k.startswith("_")}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "X-GitHub-Event": "workflow_run",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
    }


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics page as {(name, sorted labels): value}."""
    text = requests.get(url, headers=headers, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def all_done() -> bool:
    return not Job.objects.exclude(state__in=[JobState.SUCCEEDED, JobState.DEAD]).exists()


# --- one trail from webhook to check run, and the worker's metrics --------------


def test_one_correlation_id_from_webhook_to_check_run_and_worker_metrics_match_what_ran(
    tmp_path: Path, github: FakeGitHub
) -> None:
    port = free_port()
    payload = a_completed_run(github, run_id=812)
    body, headers = signed(payload)
    delivery = headers["X-GitHub-Delivery"]

    with celery_worker(tmp_path, FLAKEGUARD_METRICS_PORT=str(port), **github_env(github)) as w:
        response = Client().post(
            "/webhooks/github", data=body, content_type="application/json", headers=headers
        )
        assert response.status_code == 200, response.content
        assert response["X-Request-ID"] == delivery
        wait_for(lambda: CheckRun.objects.exists() and all_done(), timeout=90, what="the check run")
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        log_path = w.log_path

    jobs = list(Job.objects.all())
    assert {job.kind for job in jobs} >= {
        JobKind.INGEST_RUN,
        JobKind.ANALYZE_RUN,
        JobKind.VERDICTS_CHANGED,
    }
    assert {job.state for job in jobs} == {JobState.SUCCEEDED}
    assert {job.correlation_id for job in jobs} == {delivery}
    assert github.repo(REPO).check_runs  # GitHub heard of it

    lines = json_lines(log_path)
    of_jobs = [line for line in lines if "job_id" in line]
    assert of_jobs, log_path.read_text()
    assert {line["correlation_id"] for line in of_jobs} == {delivery}
    kinds_logged = {line.get("job_kind") for line in of_jobs}
    assert {JobKind.INGEST_RUN, JobKind.ANALYZE_RUN, JobKind.VERDICTS_CHANGED} <= kinds_logged
    assert any("check run" in line["event"] for line in of_jobs), [
        line["event"] for line in of_jobs
    ]
    assert all({"timestamp", "level", "logger", "event"} <= line.keys() for line in lines)

    # The worker's own exporter: counts that match the job table.
    for kind in (JobKind.INGEST_RUN, JobKind.ANALYZE_RUN, JobKind.VERDICTS_CHANGED):
        ran = sum(1 for job in jobs if job.kind == kind)
        assert (
            sample(samples, "flakeguard_jobs_processed_total", kind=kind, outcome="succeeded")
            == ran
        )
        assert sample(samples, "flakeguard_job_duration_seconds_count", kind=kind) == ran
    assert sample(samples, "flakeguard_tests_analyzed_total", mode="run") == 30
    artifacts = sample(
        samples, "flakeguard_github_requests_total",
        endpoint="/repos/{repo}/actions/runs/{id}/artifacts", status="2xx",
    )  # fmt: skip
    assert artifacts == 1
    check_runs = [v for (name, labels), v in samples.items()
                  if name == "flakeguard_github_requests_total" and "check-runs" in dict(labels)["endpoint"]]  # fmt: skip
    assert sum(check_runs) >= 1
    remaining = [
        v for (name, _), v in samples.items() if name == "flakeguard_github_rate_limit_remaining"
    ]
    assert remaining and 0 < remaining[0] < 5000
    assert sample(samples, "flakeguard_jobs_in_progress", kind=JobKind.INGEST_RUN) == 0


def test_web_metrics_add_up_every_gunicorn_worker_and_need_the_token(tmp_path: Path) -> None:
    with gunicorn(
        tmp_path, port=free_port(), workers=3, FLAKEGUARD_METRICS_TOKEN=METRICS_TOKEN
    ) as url:
        auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        refused = requests.get(f"{url}/metrics", timeout=10)
        wrong = requests.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
        seen = []
        for _ in range(8):
            requests.get(f"{url}/api/v1/schema/", timeout=10)
            samples = scrape(f"{url}/metrics", **auth)
            seen.append(
                sample(
                    samples,
                    "django_http_responses_total_by_status_view_method_total",
                    status="200",
                    view="schema",
                    method="GET",
                )
            )
        # A pod-IP Host, as Prometheus sends it, is let through to /metrics.
        by_ip = requests.get(
            f"{url}/metrics", headers={**auth, "Host": "10.1.2.3:8000"}, timeout=10
        )

    assert refused.status_code == 401 and wrong.status_code == 401
    assert seen == [1, 2, 3, 4, 5, 6, 7, 8]  # one count over all workers, never reset
    assert by_ip.status_code == 200
    assert (
        "flakeguard_queue_depth" in by_ip.text and "flakeguard_jobs_in_progress" not in by_ip.text
    )


# --- a Redis outage is not a web outage ------------------------------------------


def test_web_stays_ready_without_redis_and_a_webhook_taken_then_is_processed_after(
    tmp_path: Path, github: FakeGitHub
) -> None:
    payload = a_completed_run(github, run_id=913)
    body, headers = signed(payload)
    with redis_server(tmp_path) as broker:
        env = {**github_env(github), "REDIS_URL": broker.url}
        with (
            gunicorn(tmp_path, port=free_port(), **env) as url,
            celery_worker(tmp_path, **env),
            celery_beat(tmp_path, **env) as beat,
        ):
            wait_for(lambda: _sweep_every_second(), timeout=30, what="Beat to write its schedule")
            broker.stop()
            ready = requests.get(f"{url}/health/ready", timeout=30)
            health = requests.get(f"{url}/health", timeout=30)
            accepted = requests.post(
                f"{url}/webhooks/github", data=body, headers=headers, timeout=60
            )
            assert accepted.status_code == 200, accepted.text
            [job] = Job.objects.filter(kind=JobKind.INGEST_RUN)
            assert job.state == JobState.PENDING and job.dispatched_at is None  # not sent
            broker.start()
            started = time.monotonic()
            wait_for(
                lambda: CheckRun.objects.exists() and all_done(), timeout=120, what="the import"
            )
            recovered_in = time.monotonic() - started
            beat_log = beat.log_path.read_text()

    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"]["status"] == "ok" and checks["broker"]["status"] == "error"
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert health.json()["components"]["broker"]["status"] == "error"
    assert recovered_in < 60, (recovered_in, beat_log[-3000:])
    assert set(Job.objects.values_list("state", flat=True)) == {JobState.SUCCEEDED}


def _sweep_every_second() -> bool:
    """Beat's schedule is the database's, edited as in the admin: the sweeper every second."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    task = PeriodicTask.objects.filter(name="sweep-jobs").first()
    if task is None:
        return False
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    task.save()
    return True


# --- probes ----------------------------------------------------------------------


def probe(component: str, heartbeat_dir: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLAKEGUARD_HEARTBEAT_DIR": heartbeat_dir, "FLAKEGUARD_PROBE_MAX_AGE": "6"}
    return subprocess.run(
        [sys.executable, "-m", "flakeguard.probe", component],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_a_worker_stays_alive_through_a_redis_blip_and_fails_its_probe_when_hung(
    tmp_path: Path,
) -> None:
    heartbeat = str(tmp_path / "worker-heartbeat")
    with redis_server(tmp_path) as broker:
        env = {"REDIS_URL": broker.url, "FLAKEGUARD_HEARTBEAT_DIR": heartbeat,
               "FLAKEGUARD_HEARTBEAT_SECONDS": "1"}  # fmt: skip
        with celery_worker(tmp_path, **env) as worker:
            assert probe("worker", heartbeat).returncode == 0
            broker.stop()
            during_blip = []
            for _ in range(12):  # twice the probe's limit without a broker
                during_blip.append(probe("worker", heartbeat))
                time.sleep(1)
            state = json.loads((Path(heartbeat) / "worker.json").read_text())
            broker.start()
            wait_for(
                lambda: (
                    json.loads((Path(heartbeat) / "worker.json").read_text())["broker"]
                    == "connected"
                ),
                timeout=60,
                what="the worker to reconnect",
            )
            after_blip = probe("worker", heartbeat)
            os.kill(worker.pid, signal.SIGSTOP)  # hung: no thread of it runs any more
            time.sleep(8)
            hung = probe("worker", heartbeat)
            os.kill(worker.pid, signal.SIGCONT)

    assert [p.returncode for p in during_blip] == [0] * 12, [p.stderr for p in during_blip]
    assert state["broker"] == "reconnecting"
    assert after_blip.returncode == 0, after_blip.stderr
    assert hung.returncode == 1 and "hung or stopped" in hung.stderr


def test_beat_keeps_its_schedule_in_the_database_with_expiring_messages_and_a_probe(
    tmp_path: Path,
) -> None:
    from django_celery_beat.models import PeriodicTask

    heartbeat = str(tmp_path / "beat-heartbeat")
    with celery_beat(tmp_path, FLAKEGUARD_HEARTBEAT_DIR=heartbeat) as beat:
        wait_for(lambda: PeriodicTask.objects.filter(name="sweep-jobs").exists(), timeout=30,
                 what="the schedule in the database")  # fmt: skip
        wait_for(lambda: (Path(heartbeat) / "beat.json").exists(), timeout=30, what="a tick")
        alive = probe("beat", heartbeat)
        os.kill(beat.pid, signal.SIGSTOP)
        time.sleep(8)
        hung = probe("beat", heartbeat)
        os.kill(beat.pid, signal.SIGCONT)

    sweep = PeriodicTask.objects.get(name="sweep-jobs")
    polls = PeriodicTask.objects.get(name="schedule-polls")
    assert (sweep.queue, polls.queue) == ("scheduler", "scheduler")
    assert sweep.expire_seconds == 12 and polls.expire_seconds == 25
    assert all(t.expire_seconds for t in PeriodicTask.objects.exclude(name__startswith="celery."))
    assert alive.returncode == 0, alive.stderr
    assert hung.returncode == 1 and "beat heartbeat" in hung.stderr


def test_an_operators_change_to_the_schedule_survives_a_beat_restart(tmp_path: Path) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    with celery_beat(tmp_path):
        wait_for(lambda: PeriodicTask.objects.filter(name="sweep-jobs").exists(), timeout=30,
                 what="the schedule in the database")  # fmt: skip
    task = PeriodicTask.objects.get(name="sweep-jobs")
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=45, period="seconds")
    task.save()
    with celery_beat(tmp_path) as beat:
        wait_for(lambda: b"beat: Starting" in beat.log_path.read_bytes(), timeout=30, what="Beat")
        time.sleep(2)

    assert PeriodicTask.objects.get(name="sweep-jobs").interval.every == 45


# --- Flower and queue control ------------------------------------------------------


def test_a_dead_job_is_a_failed_task_in_flower_which_needs_its_password(tmp_path: Path) -> None:
    from jobs.dispatch import enqueue_job

    port = free_port()
    env = app_env(tmp_path, FLOWER_BASIC_AUTH="ops:flower-pass")
    argv = [sys.executable, "-m", "celery", "-A", "flakeguard", "flower", f"--port={port}",
            "--address=127.0.0.1"]  # fmt: skip
    with (
        process(argv, env=env, log_path=tmp_path / "flower.log", ready=None) as flower,
        celery_worker(tmp_path),
    ):
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _flower_up(url), timeout=60, what="Flower")
        job, _ = enqueue_job(
            kind=JobKind.INGEST_RUN, dedup_key="ingest:bad", payload={"nonsense": 1}
        )
        wait_for(lambda: Job.objects.get(pk=job.pk).state == JobState.DEAD, timeout=60, what="dead")

        def failed_in_flower() -> bool:
            tasks = requests.get(f"{url}/api/tasks", auth=("ops", "flower-pass"), timeout=5).json()
            return any(
                t.get("state") == "FAILURE"
                and t.get("name") == "ingest.ingest_run"
                and t.get("args") in (f"[{job.pk}]", f"({job.pk},)")
                for t in tasks.values()
            )

        wait_for(failed_in_flower, timeout=30, what="the failed task in Flower")
        anonymous = requests.get(f"{url}/api/tasks", timeout=5)
        assert flower.poll() is None

    assert anonymous.status_code == 401


def _flower_up(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthcheck", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_paused_queue_is_not_consumed_until_it_is_resumed(
    tmp_path: Path, django_user_model
) -> None:
    from jobs.dispatch import enqueue_job

    staff = django_user_model.objects.create_superuser("ops", password="pw")
    api = Client()
    api.force_login(staff)
    viewer = Client()
    viewer.force_login(django_user_model.objects.create_user("dev", password="pw"))

    with celery_worker(tmp_path, FLAKEGUARD_HEARTBEAT_SECONDS="1") as worker:
        assert viewer.post("/api/v1/queues/polling/pause/").status_code == 403
        paused = api.post("/api/v1/queues/polling/pause/")
        wait_for(lambda: b"queue polling paused" in worker.log_path.read_bytes(), timeout=30,
                 what="the worker to stop consuming")  # fmt: skip
        job, _ = enqueue_job(kind=JobKind.TEST_EVENT, dedup_key="event:x", payload={})
        time.sleep(3)
        waiting = Job.objects.get(pk=job.pk).state
        stats = {q["name"]: q for q in api.get("/api/v1/queues/").json()}
        resumed = api.post("/api/v1/queues/polling/resume/")
        wait_for(lambda: Job.objects.get(pk=job.pk).state == JobState.SUCCEEDED, timeout=30,
                 what="the job to run")  # fmt: skip
        JobFactory(kind=JobKind.TEST_EVENT, state=JobState.DEAD)
        JobFactory(kind=JobKind.INGEST_RUN, state=JobState.DEAD)
        wrong_kind = api.post("/api/v1/jobs/retry-dead/?kind=nope")
        as_viewer = viewer.post("/api/v1/jobs/retry-dead/")
        retried = api.post("/api/v1/jobs/retry-dead/?kind=test_event")
        unknown = api.post("/api/v1/queues/nope/pause/")

    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert waiting == JobState.PENDING
    assert stats["polling"]["depth"] == 1 and stats["polling"]["paused"] is True
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert retried.json() == {"retried": 1}
    assert Job.objects.filter(state=JobState.DEAD).count() == 1  # the other kind stays
    assert wrong_kind.status_code == 400 and as_viewer.status_code == 403
    assert unknown.status_code == 404
