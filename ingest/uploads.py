"""Uploads: reports a CI sends over the API, held in the database until a worker imports them.

Receiving stores the files as 1 MiB parts and queues the same ``ingest_run``
job any other import of the run attempt would (one per attempt, whoever asks
first). The job reads the parts back into a temporary folder on the worker,
runs the usual import over them, with every guard of artifacts (ZIP and XML
bombs, malformed reports), and deletes them in the transaction that stores
the results.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from django.db import IntegrityError, transaction
from django.utils import timezone

from ingest.models import Repository, Upload, UploadPart, WorkflowRun
from ingest.runs import RunFile, RunInfo
from ingest.services import register_file_source
from jobs.dispatch import enqueue_job
from jobs.errors import PermanentJobError
from jobs.models import JobKind, JobState

CHUNK_BYTES = 1 << 20
UPLOAD_SUFFIXES = (".xml", ".zip")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UploadState:
    PENDING = "pending"
    IMPORTING = "importing"
    DONE = "done"
    FAILED = "failed"


def state_of(upload: Upload) -> tuple[str, str]:
    """(state, error) of an upload, read from its job."""
    if upload.summary is not None:
        return UploadState.DONE, ""
    job = upload.job
    if job is None:
        return UploadState.PENDING, ""
    if job.state == JobState.DEAD:
        lines = (job.last_error or "").strip().splitlines()
        return UploadState.FAILED, lines[-1] if lines else "the import failed"
    if job.state == JobState.SUCCEEDED:
        return UploadState.DONE, ""
    if job.state == JobState.RUNNING:
        return UploadState.IMPORTING, ""
    return UploadState.PENDING, ""


def summary_of(upload: Upload) -> dict[str, Any] | None:
    """The import summary: the stored run attempt's counts, once it is stored."""
    if upload.summary is not None:
        return upload.summary
    run = WorkflowRun.objects.filter(
        repository_id=upload.repository_id, run_id=upload.run_id, run_attempt=upload.run_attempt
    ).first()
    if run is None:
        return None
    return _summary(run)


def receive_upload(
    *,
    repository: Repository,
    run: RunInfo,
    job_label: str,
    files: Sequence[tuple[str, BinaryIO]],
    created_by: str,
) -> tuple[Upload, bool]:
    """Keep an upload and queue its import; the same attempt again returns the first upload.

    ``files`` are (name, stream) pairs, read in chunks: a file is never held
    in memory whole.
    """
    existing = _existing(repository, run)
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            upload = Upload.objects.create(
                repository=repository,
                run_id=run.run_id,
                run_attempt=run.run_attempt,
                created_by=created_by,
            )
            job, created = enqueue_job(
                kind=JobKind.INGEST_RUN,
                dedup_key=run.dedup_key,
                payload={"run": run.to_json(), "source": "upload", "upload_id": upload.pk,
                         "label": job_label},
            )  # fmt: skip
            upload.job = job
            if created:  # else another import of this attempt (GitHub, the CLI) has it
                upload.files = [
                    {"name": name, "bytes": _store_parts(upload, number, stream)}
                    for number, (name, stream) in enumerate(files)
                ]
            upload.save(update_fields=["job", "files"])
    except IntegrityError:
        # The same attempt posted twice at once: the other request's upload stands.
        existing = _existing(repository, run)
        if existing is None:
            raise
        return existing, False
    return upload, True


def _existing(repository: Repository, run: RunInfo) -> Upload | None:
    return (
        Upload.objects.select_related("job", "repository")
        .filter(repository=repository, run_id=run.run_id, run_attempt=run.run_attempt)
        .first()
    )


def _store_parts(upload: Upload, number: int, stream: BinaryIO) -> int:
    size = 0
    chunk_number = 0
    while chunk := stream.read(CHUNK_BYTES):
        UploadPart.objects.create(
            upload=upload, file_number=number, chunk_number=chunk_number, data=chunk
        )
        size += len(chunk)
        chunk_number += 1
    return size


@contextmanager
def fetch_upload(run: RunInfo, payload: dict[str, Any]) -> Iterator[tuple[RunInfo, list[RunFile]]]:
    """The ``upload`` file source: the parts, written back to files on this worker.

    Everything happens in one transaction: the import, the upload's summary
    and the deletion of its parts, so a crash keeps the parts for the retry.
    """
    upload = Upload.objects.filter(pk=payload.get("upload_id")).first()
    if upload is None:
        raise PermanentJobError(f"upload {payload.get('upload_id')} does not exist")
    label = str(payload.get("label") or "")
    with tempfile.TemporaryDirectory(prefix="flakeguard-upload-") as tmp, transaction.atomic():
        files = [
            RunFile(path=_write_file(upload, number, entry["name"], Path(tmp)), label=label,
                    display=entry["name"])
            for number, entry in enumerate(upload.files)
        ]  # fmt: skip
        yield run, files
        stored = WorkflowRun.objects.filter(
            repository_id=upload.repository_id,
            run_id=upload.run_id,
            run_attempt=upload.run_attempt,
        ).first()
        Upload.objects.filter(pk=upload.pk).update(
            summary=_summary(stored) if stored else {}, finished_at=timezone.now()
        )
        UploadPart.objects.filter(upload=upload).delete()


def _write_file(upload: Upload, number: int, name: str, folder: Path) -> Path:
    # The client's file name only picks the suffix (.xml or .zip) and a readable stem.
    path = folder / f"{number:03d}-{_UNSAFE.sub('_', Path(name).name)[-100:]}"
    parts = UploadPart.objects.filter(upload=upload, file_number=number).order_by("chunk_number")
    with path.open("wb") as out:
        for data in parts.values_list("data", flat=True).iterator(chunk_size=8):
            out.write(data)
    return path


def _summary(run: WorkflowRun) -> dict[str, Any]:
    return {
        "results_stored": run.results_count,
        "files_stored": run.files_count,
        "files_refused": run.file_errors,
    }


register_file_source("upload", fetch_upload)
