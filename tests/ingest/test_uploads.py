"""The upload API: any CI's way in, idempotent per run attempt, size-capped and rate-limited."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from ingest.models import TestResult, Upload, UploadPart, WorkflowRun
from ingest.services import ingest_run_job
from ingest.tokens import create_token
from jobs.models import Job, JobKind, JobState
from jobs.runner import run_job
from tests.factories import RepositoryFactory
from tests.ingest.junit_samples import pytest_report, write_zip

REPO = "acme/upload"
REPORT = pytest_report(
    [("tests.test_api", "test_ok", "passed"), ("tests.test_api", "test_bad", "failed")]
)


@pytest.fixture
def ci(db) -> Client:
    """A CI with an upload token."""
    _, secret = create_token(repository=RepositoryFactory(full_name=REPO), scope="upload")
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def form(run_id: int = 7, **files: bytes) -> dict[str, object]:
    return {
        "repo": REPO,
        "run_id": str(run_id),
        "run_attempt": "1",
        "sha": "c" * 40,
        "branch": "main",
        "event": "push",
        "started_at": "2026-11-20T09:30:00+00:00",
        "job": "linux-py3.12",
        "files": [SimpleUploadedFile(name, data) for name, data in (files or {"junit.xml": REPORT}).items()],
    }  # fmt: skip


def import_upload(upload_id: int) -> None:
    """What a worker does with the upload's job."""
    job = Upload.objects.get(pk=upload_id).job
    run_job(job.pk, ingest_run_job)


@pytest.mark.django_db
def test_an_upload_is_accepted_then_imported_and_its_files_deleted(ci: Client) -> None:
    accepted = ci.post("/api/v1/uploads/", form())

    assert accepted.status_code == 202, accepted.content
    body = accepted.json()
    assert body["state"] == "pending" and body["url"].endswith(f"/api/v1/uploads/{body['id']}/")
    assert UploadPart.objects.filter(upload_id=body["id"]).exists()
    job = Job.objects.get(pk=Upload.objects.get(pk=body["id"]).job_id)
    assert job.kind == JobKind.INGEST_RUN and job.dedup_key == f"ingest:{REPO}:7:1"

    import_upload(body["id"])
    done = ci.get(body["url"]).json()

    assert done["state"] == "done", done
    assert done["summary"] == {"results_stored": 2, "files_stored": 1, "files_refused": []}
    assert not UploadPart.objects.exists()
    run = WorkflowRun.objects.get(repository__full_name=REPO, run_id=7)
    assert set(TestResult.objects.filter(run=run).values_list("job", flat=True)) == {"linux-py3.12"}


@pytest.mark.django_db
def test_the_same_run_attempt_again_answers_with_the_first_upload(ci: Client) -> None:
    first = ci.post("/api/v1/uploads/", form()).json()
    import_upload(first["id"])
    again = ci.post("/api/v1/uploads/", form())
    before_import = ci.post("/api/v1/uploads/", form(run_id=8))
    twice = ci.post("/api/v1/uploads/", form(run_id=8))

    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert again.json()["state"] == "done"
    assert twice.status_code == 200 and twice.json()["id"] == before_import.json()["id"]
    assert Upload.objects.count() == 2 and Job.objects.filter(kind=JobKind.INGEST_RUN).count() == 2
    assert TestResult.objects.count() == 2  # run 7 once; run 8 not imported yet
    assert UploadPart.objects.filter(upload_id=twice.json()["id"]).count() == 1  # kept once


@pytest.mark.django_db
def test_an_upload_over_the_limit_is_413_and_stores_nothing(ci: Client, settings) -> None:
    settings.FLAKEGUARD_UPLOAD_MAX_BYTES = 10_000
    refused = ci.post("/api/v1/uploads/", form(**{"big.xml": b" " * 20_000 + REPORT}))

    assert refused.status_code == 413
    assert "limit of 10,000 bytes" in refused.json()["detail"]
    assert not Upload.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
def test_uploads_are_rate_limited_per_token(ci: Client, settings) -> None:
    settings.FLAKEGUARD_UPLOAD_RATE = "2/min"
    statuses = [ci.post("/api/v1/uploads/", form(run_id=n)).status_code for n in (1, 2, 3)]
    limited = ci.post("/api/v1/uploads/", form(run_id=4))

    assert statuses == [202, 202, 429]
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert Upload.objects.count() == 2


@pytest.mark.django_db
def test_bad_uploads_get_clear_errors(ci: Client) -> None:
    no_files = form()
    no_files.pop("files")
    unknown = form() | {"colour": "blue"}
    wrong_type = form(**{"report.txt": b"hello"})
    bad_sha = form() | {"sha": "not-a-sha"}

    assert ci.post("/api/v1/uploads/", no_files).json() == {
        "files": ["give one or more .xml or .zip files"]
    }
    assert ci.post("/api/v1/uploads/", unknown).json() == {"colour": ["unknown field"]}
    assert "only .xml and .zip" in ci.post("/api/v1/uploads/", wrong_type).json()["files"][0]
    assert ci.post("/api/v1/uploads/", bad_sha).json() == {"sha": ["not a sha"]}
    assert not Upload.objects.exists()


@pytest.mark.django_db
def test_hostile_files_are_refused_by_the_import_and_the_rest_kept(
    ci: Client, tmp_path: Path
) -> None:
    from tests.ingest.test_archives import MiB, zeros_bomb

    bomb = zeros_bomb(tmp_path / "bomb.zip", size=64 * MiB).read_bytes()
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<testsuite><testcase name='&lol2;'/></testsuite>"
    )
    good_zip = write_zip(tmp_path / "good.zip", {"reports/junit.xml": REPORT}).read_bytes()
    body = ci.post(
        "/api/v1/uploads/",
        form(**{"bomb.zip": bomb, "laughs.xml": laughs, "broken.xml": b"<testsuite><testcase",
                "good.zip": good_zip}),
    ).json()  # fmt: skip

    import_upload(body["id"])
    summary = ci.get(body["url"]).json()["summary"]

    assert summary["results_stored"] == 2 and summary["files_stored"] == 1
    refused = {entry["path"].split("!")[0]: entry["error"] for entry in summary["files_refused"]}
    assert set(refused) == {"bomb.zip", "laughs.xml", "broken.xml"}, refused
    assert "DOCTYPE" in refused["laughs.xml"]


@pytest.mark.django_db
def test_a_failed_import_shows_as_failed_with_its_error(ci: Client) -> None:
    body = ci.post("/api/v1/uploads/", form()).json()
    upload = Upload.objects.get(pk=body["id"])
    Job.objects.filter(pk=upload.job_id).update(
        state=JobState.DEAD, last_error="Traceback …\nOperationalError: the database went away"
    )

    shown = ci.get(body["url"]).json()

    assert shown["state"] == "failed" and shown["summary"] is None
    assert shown["error"] == "OperationalError: the database went away"
