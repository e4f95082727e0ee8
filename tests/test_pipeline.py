"""End to end on real PostgreSQL, Redis and ``celery worker`` processes.

These tests start workers as separate processes against the test database,
send work through the job table and the broker, and check the rows that land,
including after a worker is killed with SIGKILL in the middle of an import.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from django.core.management import call_command
from django.utils import timezone

from analysis.models import TestScore
from ingest.models import TestCase, TestResult, WorkflowRun
from ingest.runs import RunFile, RunInfo
from ingest.services import enqueue_run_import
from ingest.store import store_run
from jobs.models import Job, JobKind, JobState
from jobs.sweeper import sweep_jobs
from tests.ingest.junit_samples import pytest_report, write, write_zip
from tests.processes import celery_worker, scored_vs_stored, wait_for

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def clean_broker(redis_url: str) -> None:
    redis.Redis.from_url(redis_url).flushdb()


def make_manifest(tmp_path: Path) -> Path:
    base = datetime(2026, 9, 1, 12, tzinfo=UTC)
    lines = []
    for i, run_id in enumerate((501, 502, 503)):
        cases = [
            (f"tests.test_mod{n % 5}", f"test_{n}", "failed" if (n + i) % 9 == 0 else "passed")
            for n in range(40)
        ]
        write_zip(
            tmp_path / f"{run_id}" / "junit-linux.zip", {"reports/junit.xml": pytest_report(cases)}
        )
        write(tmp_path / f"{run_id}" / "macos" / "junit.xml", pytest_report(cases[:30]))
        files = [{"path": f"{run_id}/junit-linux.zip", "job": "linux"}, f"{run_id}/macos/junit.xml"]
        if run_id == 503:
            write(tmp_path / "503" / "broken.xml", b"<testsuite><testcase name='x'")
            files.append("503/broken.xml")
        lines.append(
            {
                "repo": "acme/shop",
                "run_id": run_id,
                "run_attempt": 1,
                "sha": f"{run_id:040x}",
                "branch": "main",
                "event": "push",
                "started_at": (base + timedelta(hours=i)).isoformat(),
                "workflow": "ci",
                "files": files,
            }
        )
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return manifest


def run_ingest_command(manifest: Path) -> dict:
    out = io.StringIO()
    call_command(
        "ingest_junit", "--manifest", str(manifest), "--json", stdout=out, stderr=io.StringIO()
    )
    return json.loads(out.getvalue())


def test_manifest_is_imported_through_the_queue_by_a_real_worker(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)

    with celery_worker(tmp_path):
        first = run_ingest_command(manifest)
        second = run_ingest_command(manifest)
        # Each stored run queued its analysis on runs-analyze; let the worker finish them.
        wait_for(
            lambda: not Job.objects.exclude(state__in=[JobState.SUCCEEDED, JobState.DEAD]).exists(),
            timeout=60,
            what="the analyze jobs",
        )

    assert first["runs_imported"] == 3 and first["runs_skipped"] == 0
    assert first["results_stored"] == 3 * (40 + 30)
    assert first["files_refused"] == [
        {"path": "503/broken.xml", "error": first["files_refused"][0]["error"]}
    ]
    assert (
        second["runs_imported"] == 0
        and second["runs_skipped"] == 3
        and second["results_stored"] == 0
    )
    assert WorkflowRun.objects.count() == 3
    assert TestResult.objects.count() == 210
    assert TestCase.objects.count() == 40
    assert set(TestResult.objects.values_list("job", flat=True)) == {"linux", "macos"}
    assert set(Job.objects.values_list("state", flat=True)) == {JobState.SUCCEEDED}
    assert Job.objects.filter(kind=JobKind.ANALYZE_RUN).count() == 3
    assert not WorkflowRun.objects.filter(analyzed_at__isnull=True).exists()
    assert TestScore.objects.count() == 40
    assert set(TestScore.objects.values_list("results", flat=True)) <= {3, 6}


def test_worker_killed_mid_ingest_leaves_the_run_stored_exactly_once(tmp_path: Path) -> None:
    size = 300_000
    cases = [
        (f"tests.test_mod{n % 100}", f"test_{n}", "failed" if n % 13 == 0 else "passed")
        for n in range(size)
    ]
    report = write(tmp_path / "big" / "junit.xml", pytest_report(cases))
    run = RunInfo(
        repo="acme/shop", run_id=900, run_attempt=1, sha="f" * 40, branch="main", event="push",
        workflow="ci", started_at=datetime(2026, 9, 2, tzinfo=UTC),
    )  # fmt: skip
    lease = 3
    with celery_worker(tmp_path, FLAKEGUARD_JOB_LEASE_SECONDS=str(lease)) as first_worker:
        job, _ = enqueue_run_import(run=run, files=[RunFile(path=report)])
        wait_for(
            lambda: Job.objects.get(pk=job.pk).state == JobState.RUNNING,
            timeout=30,
            what="the worker to claim the job",
        )
        time.sleep(0.5)  # well into parsing and COPY, far from the commit
        assert Job.objects.get(pk=job.pk).state == JobState.RUNNING
        os.killpg(first_worker.pid, signal.SIGKILL)
        first_worker.wait()

    killed = Job.objects.get(pk=job.pk)
    assert killed.state == JobState.RUNNING and killed.attempts == 1
    assert WorkflowRun.objects.count() == 0  # the open transaction died with the worker
    assert TestResult.objects.count() == 0

    with celery_worker(tmp_path, FLAKEGUARD_JOB_LEASE_SECONDS=str(lease)):
        wait_for(
            lambda: timezone.now() > Job.objects.get(pk=job.pk).lease_expires_at,
            timeout=lease + 5,
            what="the dead worker's lease to expire",
        )
        assert sweep_jobs() == 1
        wait_for(
            lambda: Job.objects.get(pk=job.pk).state in (JobState.SUCCEEDED, JobState.DEAD),
            timeout=180,
            what="the re-dispatched job to finish",
        )

    done = Job.objects.get(pk=job.pk)
    assert done.state == JobState.SUCCEEDED, done.last_error
    assert done.attempts == 2
    assert WorkflowRun.objects.count() == 1
    assert TestResult.objects.count() == size
    assert TestResult.objects.values("test_id").distinct().count() == size


def test_recompute_command_waits_for_a_real_worker(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    with celery_worker(tmp_path):
        run_ingest_command(manifest)
        out = io.StringIO()
        call_command("recompute", "--repo", "acme/shop", "--json", stdout=out, stderr=io.StringIO())

    (entry,) = json.loads(out.getvalue())["repositories"]
    job = Job.objects.get(kind=JobKind.RECOMPUTE_REPO)
    assert job.state == JobState.SUCCEEDED and entry["job"] == job.pk
    assert entry["repo"] == "acme/shop" and entry["tests"] == 40
    assert job.progress["done"] == 40
    assert TestScore.objects.count() == 40


def test_worker_killed_mid_backlog_rescore_leaves_every_test_scored_once(tmp_path: Path) -> None:
    tests, runs = 6000, 60
    for n in range(runs):
        cases = [
            ("tests.test_big", f"test_{t}", "failed" if (t * 7 + n) % 97 == 0 else "passed")
            for t in range(tests)
        ]
        report = write(tmp_path / f"{n}" / "junit.xml", pytest_report(cases))
        run = RunInfo(
            repo="acme/shop", run_id=1000 + n, run_attempt=1, sha=f"{n:040x}", branch="main",
            event="push", workflow="ci", started_at=datetime(2026, 9, 1, tzinfo=UTC) + timedelta(hours=n),
        )  # fmt: skip
        store_run(run=run, files=[RunFile(path=report, label="linux")])
    # No worker yet: the analyze jobs wait on runs-analyze, a backlog of 60 runs.
    lease = 3
    env = {"FLAKEGUARD_JOB_LEASE_SECONDS": str(lease), "FLAKEGUARD_RECOMPUTE_BATCH_SIZE": "100"}

    def rescoring() -> Job | None:
        for job in Job.objects.filter(kind=JobKind.ANALYZE_RUN, state=JobState.RUNNING):
            if 0 < int(job.progress.get("done") or 0) < tests:
                return job
        return None

    with celery_worker(tmp_path, **env) as first_worker:
        deadline = time.monotonic() + 120
        while rescoring() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        killed = rescoring()
        assert killed is not None, "the backlog rescore was never seen midway"
        os.killpg(first_worker.pid, signal.SIGKILL)
        first_worker.wait()

    # The runs were taken in with the rescore's progress; the scores are half written.
    assert not WorkflowRun.objects.filter(analyzed_at__isnull=True).exists()
    assert TestScore.objects.count() < tests

    with celery_worker(tmp_path, **env):
        wait_for(
            lambda: timezone.now() > Job.objects.get(pk=killed.pk).lease_expires_at,
            timeout=lease + 5,
            what="the dead worker's lease to expire",
        )
        sweep_jobs()
        wait_for(
            lambda: not Job.objects.exclude(state__in=[JobState.SUCCEEDED, JobState.DEAD]).exists(),
            timeout=180,
            what="every job to finish",
        )

    resumed = Job.objects.get(pk=killed.pk)
    assert resumed.state == JobState.SUCCEEDED and resumed.attempts == 2, resumed.last_error
    assert resumed.result["recomputed"]["tests"] == tests
    assert not Job.objects.filter(state=JobState.DEAD).exists()
    scored, stored = scored_vs_stored()
    assert len(scored) == tests
    assert scored == stored  # every test, from every analyzed run, exactly once


def test_an_upload_is_imported_by_a_worker_that_shares_no_folder_with_the_web(
    tmp_path: Path, settings
) -> None:
    import shutil

    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    from ingest.models import Repository, Upload, UploadPart
    from ingest.tokens import create_token

    web_tmp = tmp_path / "web"
    web_tmp.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(web_tmp)
    _, secret = create_token(
        repository=Repository.objects.create(full_name="acme/ci"), scope="upload"
    )
    ci = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    cases = [("tests.test_ci", f"test_{n}", "failed" if n == 3 else "passed") for n in range(40)]

    def upload():
        return ci.post(
            "/api/v1/uploads/",
            {
                "repo": "acme/ci", "run_id": "501", "sha": "e" * 40, "branch": "main",
                "event": "push", "started_at": "2026-11-20T09:30:00Z", "job": "linux",
                "files": [SimpleUploadedFile("junit.xml", pytest_report(cases))],
            },
        )  # fmt: skip

    accepted = upload()
    assert accepted.status_code == 202, accepted.content
    shutil.rmtree(web_tmp)  # whatever the web side wrote to its disk is gone
    worker_tmp = tmp_path / "worker"
    worker_tmp.mkdir()
    url = accepted.json()["url"]
    with celery_worker(tmp_path, TMPDIR=str(worker_tmp)):
        wait_for(
            lambda: ci.get(url).json()["state"] == "done", timeout=60, what="the upload's import"
        )
    web_tmp.mkdir()
    again = upload()

    done = ci.get(url).json()
    assert done["summary"] == {"results_stored": 40, "files_stored": 1, "files_refused": []}
    assert again.status_code == 200 and again.json()["id"] == accepted.json()["id"]
    assert TestResult.objects.filter(run__repository__full_name="acme/ci").count() == 40
    assert not UploadPart.objects.exists() and Upload.objects.count() == 1
    assert list(worker_tmp.iterdir()) == []  # the worker's copies are cleaned up too
