"""Ingest services: run imports through the job table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.models import TestResult
from ingest.runs import RunFile, RunInfo
from ingest.services import enqueue_run_import, import_runs
from jobs.models import Job, JobKind, JobState
from tests.ingest.junit_samples import pytest_report, write

RUN = RunInfo(
    repo="acme/shop",
    run_id=5,
    run_attempt=1,
    sha="d" * 40,
    started_at=datetime(2026, 9, 1, tzinfo=UTC),
)
CASES = [("tests.test_a", "test_one", "passed"), ("tests.test_a", "test_two", "failed")]


@pytest.fixture
def eager(settings) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.mark.django_db(transaction=True)
def test_asking_again_for_a_dead_import_retries_it_with_the_files_given_now(
    tmp_path: Path, eager: None
) -> None:
    dead = Job.objects.create(
        kind=JobKind.INGEST_RUN,
        dedup_key=RUN.dedup_key,
        state=JobState.DEAD,
        attempts=5,
        payload={"run": RUN.to_json(), "files": []},
        next_attempt_at=datetime(2026, 9, 1, tzinfo=UTC),
        last_error="OperationalError: server closed the connection",
    )
    report = write(tmp_path / "junit.xml", pytest_report(CASES))

    job, created = enqueue_run_import(run=RUN, files=[RunFile(path=report)])

    assert (job.pk, created) == (dead.pk, False)
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.attempts == 1
    assert job.result["results_stored"] == 2
    assert TestResult.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_import_summary_counts_imported_skipped_and_refused(tmp_path: Path, eager: None) -> None:
    good = write(tmp_path / "junit.xml", pytest_report(CASES))
    bad = write(tmp_path / "bad.xml", b"<html></html>")
    second = RunInfo(**{**RUN.__dict__, "run_attempt": 2})

    first = import_runs(runs=[(RUN, [RunFile(path=good), RunFile(path=bad, display="bad.xml")])])
    again = import_runs(runs=[(RUN, [RunFile(path=good)]), (second, [RunFile(path=good)])])

    assert (first.runs_imported, first.runs_skipped, first.results_stored) == (1, 0, 2)
    assert first.files_refused == [{"path": "bad.xml", "error": first.files_refused[0]["error"]}]
    assert "root element is <html>" in first.files_refused[0]["error"]
    assert (again.runs_imported, again.runs_skipped, again.results_stored) == (1, 1, 2)


@pytest.mark.django_db
def test_a_retry_that_finds_its_run_stored_reports_the_import_its_first_attempt_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.utils import timezone

    from ingest.store import store_run
    from jobs.registry import job_type
    from jobs.runner import run_job

    monkeypatch.setattr("jobs.dispatch.dispatch", lambda job_id, kind: None)
    report = write(tmp_path / "junit.xml", pytest_report([("tests.t", "test_a", "passed")] * 3))
    run = RunInfo(
        repo="acme/shop",
        run_id=77,
        run_attempt=1,
        sha="a" * 40,
        started_at=datetime(2026, 9, 1, tzinfo=UTC),
    )
    job, _ = enqueue_run_import(run=run, files=[RunFile(path=report)])
    # The first attempt committed the run, then its worker died before marking the job.
    store_run(run=run, files=[RunFile(path=report)])
    Job.objects.filter(pk=job.pk).update(
        state=JobState.RUNNING, attempts=1, lease_expires_at=timezone.now()
    )

    run_job(job.pk, job_type(JobKind.INGEST_RUN).service)

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.attempts == 2
    assert job.result["imported"] is True and job.result["stored_by_an_earlier_attempt"]
    assert job.result["results_stored"] == 3
    assert TestResult.objects.count() == 3  # stored once
