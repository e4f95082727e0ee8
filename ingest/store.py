"""Stores one run attempt: parses its files and writes results in one transaction.

All of a run's results stream through one COPY, numbered by ``position`` as
they go. When a report turns out to be malformed halfway, or an archive is
refused at its third member, the positions it wrote are deleted after the COPY
(a rare path), so a bad file is recorded and dropped while the run's other
files are kept, without a savepoint and a new COPY per report. Test
identities are mapped through two caches: one for this transaction and one
for the process, filled only after commit, so later runs of a repository skip
the identity round trip for tests they have already seen. A process that
does not remember the repository (a CLI import, a worker's first run of it)
reads the identities of all its tests in one query instead, up to
``FLAKEGUARD_IDENTITY_PRELOAD_SIZE``: only tests new to the repository then
pause the COPY for an upsert.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction

from ingest import bulk
from ingest.archives import ArchiveError, ArchiveLimits, iter_junit_members
from ingest.identity import failure_fingerprint, test_identity
from ingest.junit import JUnitError, Outcome, TestCaseRecord, iter_test_cases
from ingest.models import Repository, WorkflowRun
from ingest.runs import RunFile, RunInfo
from jobs.dispatch import enqueue_job
from jobs.models import JobKind

logger = logging.getLogger(__name__)

# Process-wide identity cache: repository pk → (raw classname, file, name) → test pk.
# Test rows are never deleted while a repository exists, so an entry stays true.
# Bounded by FLAKEGUARD_IDENTITY_CACHE_SIZE entries in all (about 300 bytes
# each); a test it does not hold costs one index probe in the identity upsert.
_PROCESS_IDENTITIES: dict[int, dict[tuple[str, str, str], int]] = {}

# Rows handed to COPY at a time when their tests are already known.
_STREAM_BATCH = 500
_SMALLINT_MAX = 32767


@dataclass
class StoreOutcome:
    imported: bool
    run_pk: int | None = None
    results_stored: int = 0
    files_stored: int = 0
    files_refused: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "imported": self.imported,
            "run_pk": self.run_pk,
            "results_stored": self.results_stored,
            "files_stored": self.files_stored,
            "files_refused": self.files_refused,
            "seconds": round(self.seconds, 3),
        }


def archive_limits() -> ArchiveLimits:
    return ArchiveLimits(
        max_members=settings.FLAKEGUARD_ZIP_MAX_MEMBERS,
        max_member_bytes=settings.FLAKEGUARD_ZIP_MAX_MEMBER_BYTES,
        max_total_bytes=settings.FLAKEGUARD_ZIP_MAX_TOTAL_BYTES,
        max_ratio=settings.FLAKEGUARD_ZIP_MAX_RATIO,
    )


def iter_report_streams(
    path: Path, display: str, *, limits: ArchiveLimits
) -> Iterator[tuple[str, BinaryIO]]:
    """Yield (name, stream) for each JUnit report in a file: itself, or a ZIP's members.

    Raises ArchiveError for a refused archive and OSError for an unreadable file.
    """
    if path.suffix.lower() == ".zip":
        for member, stream in iter_junit_members(path, limits=limits):
            yield f"{display}!{member.name}", stream
        return
    with path.open("rb") as stream:
        yield display, stream


def store_run(*, run: RunInfo, files: Iterable[RunFile]) -> StoreOutcome:
    """Store one run attempt with all its results, or nothing if it is already stored."""
    started = time.perf_counter()
    with transaction.atomic():
        repository, _ = Repository.objects.get_or_create(full_name=run.repo)
        run_pk = bulk.insert_run_if_absent(
            repository_id=repository.pk,
            run_id=run.run_id,
            run_attempt=run.run_attempt,
            sha=run.sha,
            branch=run.branch,
            event=run.event,
            workflow=run.workflow,
            started_at=run.started_at or datetime.now().astimezone(),
            completed_at=run.completed_at,
        )
        if run_pk is None:
            logger.info(
                "%s run %s attempt %s already stored, skipped",
                run.repo,
                run.run_id,
                run.run_attempt,
            )
            return StoreOutcome(imported=False, seconds=time.perf_counter() - started)
        writer = _ResultWriter(repository.pk, run_pk)
        outcome = StoreOutcome(imported=True, run_pk=run_pk)
        limits = archive_limits()
        with writer, _cyclic_gc_paused():
            for run_file in files:
                _store_file(writer, run_file, outcome, limits)
        writer.delete_discarded()
        WorkflowRun.objects.filter(pk=run_pk).update(
            new_tests_from=writer.created[0][0] if writer.created else None,
            new_tests_upto=writer.created[-1][1] if writer.created else None,
            results_count=outcome.results_stored,
            files_count=outcome.files_stored,
            file_errors=outcome.files_refused,
            job_loads=writer.final_job_loads(),
            job_fingerprints=writer.final_job_fingerprints(),
        )
        # Scoring the run's tests is the next step; queued with the run it follows.
        enqueue_job(
            kind=JobKind.ANALYZE_RUN, dedup_key=f"analyze:{run_pk}", payload={"run_pk": run_pk}
        )
        transaction.on_commit(writer.publish_identities)
    outcome.seconds = time.perf_counter() - started
    logger.info(
        "%s run %s attempt %s stored: %s results from %s files, %s refused, %.2fs",
        run.repo,
        run.run_id,
        run.run_attempt,
        outcome.results_stored,
        outcome.files_stored,
        len(outcome.files_refused),
        outcome.seconds,
    )
    return outcome


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Hold the cycle collector off while a run's results stream through.

    Parsing allocates millions of short-lived objects and builds no reference
    cycles, yet each allocation burst sets off collections that walk every
    live object, the identity maps included: a third of the store's time on
    a run of 500,000 results. Reference counting still frees what the loop
    drops; the collector resumes when the run is written.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _store_file(
    writer: _ResultWriter, run_file: RunFile, outcome: StoreOutcome, limits: ArchiveLimits
) -> None:
    # An archive is refused as a whole: a bomb found in its third member takes
    # back the members before it too.
    file_start = writer.position
    stored_here = files_here = 0
    refused_here: list[dict[str, str]] = []
    try:
        for report_name, stream in iter_report_streams(run_file.path, run_file.name, limits=limits):
            report_start = writer.position
            try:
                stored_here += writer.write_report(
                    stream, label=run_file.label, fallback_label=run_file.folder_label
                )
                files_here += 1
            except JUnitError as exc:
                writer.discard(after=report_start)
                refused_here.append({"path": report_name, "error": str(exc)})
                logger.warning("report %s refused: %s", report_name, exc)
    except (ArchiveError, OSError) as exc:
        writer.discard(after=file_start)
        outcome.files_refused.append({"path": run_file.name, "error": _describe_file_error(exc)})
        logger.warning("file %s refused: %s", run_file.name, exc)
        return
    if files_here == 0 and not refused_here:
        outcome.files_refused.append({"path": run_file.name, "error": "no JUnit XML report in it"})
        return
    outcome.results_stored += stored_here
    outcome.files_stored += files_here
    outcome.files_refused.extend(refused_here)


def _describe_file_error(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or exc}"
    return str(exc)


class _ResultWriter:
    """Turns parsed records into result rows, batching identity upserts and COPY."""

    def __init__(self, repository_id: int, run_pk: int) -> None:
        self.repository_id = repository_id
        self.run_pk = run_pk
        self.batch_size = settings.FLAKEGUARD_INGEST_BATCH_SIZE
        self.cache_size = settings.FLAKEGUARD_IDENTITY_CACHE_SIZE
        # identity → pk of the tests committed before this run, read at its first
        # unknown test when the process does not remember the repository.
        self.committed: dict[str, int] | None = None
        self.max_message = settings.FLAKEGUARD_MAX_MESSAGE_CHARS
        # Identities created or found in this transaction, not yet safe to share.
        self.txn_identities: dict[tuple[str, str, str], int] = {}
        # Numbers the run's results in report order (part of their primary key).
        self.position = 0
        # Position ranges (after, up to] written by reports that then failed.
        self.discarded: list[tuple[int, int]] = []
        # The pks of the tests this transaction created, as inclusive ranges in order.
        self.created: list[tuple[int, int]] = []
        self.sink = bulk.ResultSink()
        # {job label: [results, failures]} of the rows written, for WorkflowRun.job_loads.
        self.job_loads: dict[str, list[int]] = {}
        # {job label: {fingerprint: failures}}, for WorkflowRun.job_fingerprints.
        self.job_fingerprints: dict[str, dict[str, int]] = {}

    def __enter__(self) -> _ResultWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.sink.__exit__(exc_type, exc, tb)

    def write_report(self, stream: BinaryIO, *, label: str, fallback_label: str = "") -> int:
        """Parse one report and write its results; raises JUnitError if unreadable.

        Rows of a report that fails halfway have been written; the caller
        discards them by position.
        """
        batch: list[TestCaseRecord] = []
        written = 0
        names_new_tests = False
        sink = self.sink
        for record in iter_test_cases(stream, max_message_chars=self.max_message):
            batch.append(record)
            size = len(batch)
            # Small batches of known tests go out at once so the database
            # indexes them while we parse on; a batch naming new tests grows
            # until one set-based upsert can name them all.
            if size >= self.batch_size:
                written += self._flush(batch, label, fallback_label)
                batch, names_new_tests = [], False
            elif size % _STREAM_BATCH == 0 and not names_new_tests:
                rows = self._rows(batch, label, fallback_label)
                if rows is None:
                    names_new_tests = True
                else:
                    written += sink.write(rows)
                    batch = []
        if batch:
            written += self._flush(batch, label, fallback_label)
        return written

    def discard(self, *, after: int) -> None:
        if self.position > after:
            self.discarded.append((after, self.position))

    def delete_discarded(self) -> None:
        self.sink.pause()
        for after, upto in self.discarded:
            bulk.delete_results(run_pk=self.run_pk, after_position=after, upto_position=upto)
        if self.discarded and self.created:
            # Tests created for a refused report alone never happened: no other
            # import may find them and count on this run's analysis to score them.
            bulk.delete_tests_without_results(self.repository_id, self.created)

    def final_job_loads(self) -> dict[str, list[int]]:
        """Results and failures per job label of what the run keeps."""
        if not self.discarded:
            return self.job_loads
        # Rows of refused reports were counted as they went; count what is left.
        return bulk.count_job_loads([self.run_pk]).get(self.run_pk, {})

    def final_job_fingerprints(self) -> dict[str, list[list[object]]]:
        """The most common failure fingerprints per job label of what the run keeps."""
        if self.discarded:
            return bulk.count_job_fingerprints([self.run_pk]).get(self.run_pk, {})
        return {
            job: bulk.top_fingerprints(counts)
            for job, counts in self.job_fingerprints.items()
            if counts
        }

    def publish_identities(self) -> None:
        if self.discarded:
            return  # some of what it learned may have been deleted since
        learned = self.txn_identities
        if len(learned) > self.cache_size:
            return  # a suite larger than the cache: its lookups go to the database
        if sum(map(len, _PROCESS_IDENTITIES.values())) + len(learned) > self.cache_size:
            _PROCESS_IDENTITIES.clear()
        _PROCESS_IDENTITIES.setdefault(self.repository_id, {}).update(learned)

    def _flush(self, batch: list[TestCaseRecord], label: str, fallback_label: str) -> int:
        self._learn_identities(batch)
        rows = self._rows(batch, label, fallback_label)
        assert rows is not None  # every test of the batch is known now
        return self.sink.write(rows)

    def _rows(
        self, batch: list[TestCaseRecord], label: str, fallback_label: str
    ) -> list[bulk.ResultRow] | None:
        """Result rows for the batch, or None when it names a test not known yet."""
        txn = self.txn_identities
        process = _PROCESS_IDENTITIES.get(self.repository_id, {})
        run_pk = self.run_pk
        position = self.position
        rows: list[bulk.ResultRow] = []
        append = rows.append
        loads: dict[str, list[int]] = {}
        fingerprints: dict[str, dict[str, int]] = {}
        job = None
        load = [0, 0]
        counts: dict[str, int] = {}
        for record in batch:
            key = (record.classname, record.file, record.name)
            test_id = process.get(key) or txn.get(key)
            if test_id is None:
                return None
            row_job = label or record.label or fallback_label
            if row_job != job:
                job = row_job
                load = loads.setdefault(job, [0, 0])
                counts = fingerprints.setdefault(job, {})
            load[0] += 1
            outcome = record.outcome
            if outcome is Outcome.PASSED:
                message = fingerprint = ""
            elif outcome is Outcome.SKIPPED:
                message, fingerprint = record.message, ""
            else:
                load[1] += 1
                message = record.message or record.stack
                fingerprint = failure_fingerprint(record.failure_type, message)
                counts[fingerprint] = counts.get(fingerprint, 0) + 1
            flaky, reruns = record.flaky_reruns, record.rerun_failures
            position += 1
            append(
                (
                    run_pk,
                    test_id,
                    position,
                    outcome,  # a str subclass; stored as its value
                    record.time,
                    job,
                    flaky if flaky <= _SMALLINT_MAX else _SMALLINT_MAX,
                    reruns if reruns <= _SMALLINT_MAX else _SMALLINT_MAX,
                    message,
                    fingerprint,
                )
            )
        self.position = position
        for job, (results, failures) in loads.items():
            total = self.job_loads.setdefault(job, [0, 0])
            total[0] += results
            total[1] += failures
        for job, per_fingerprint in fingerprints.items():
            kept = self.job_fingerprints.setdefault(job, {})
            for fingerprint, failures in per_fingerprint.items():
                kept[fingerprint] = kept.get(fingerprint, 0) + failures
        return rows

    def _learn_identities(self, batch: list[TestCaseRecord]) -> None:
        """Make every test of the batch known, with one set-based upsert for the new ones."""
        txn = self.txn_identities
        if len(txn) >= self.cache_size:
            txn.clear()  # bounded memory for a very large run; the database remembers
        process = _PROCESS_IDENTITIES.get(self.repository_id, {})
        missing: dict[tuple[str, str, str], tuple[str, str, str, str]] = {}
        for record in batch:
            key = (record.classname, record.file, record.name)
            if key in txn or key in process or key in missing:
                continue
            missing[key] = test_identity(record.classname, record.file, record.name)
        if not missing:
            return
        committed = self._committed_identities(process)
        if committed:
            unknown = {}
            for key, identity in missing.items():
                test_id = committed.get(identity[0])
                if test_id is None:
                    unknown[key] = identity
                else:
                    txn[key] = test_id
            missing = unknown
            if not missing:
                return
        self.sink.pause()  # the upsert needs the connection the COPY holds
        found, created = bulk.upsert_test_identities(
            self.repository_id, list(dict.fromkeys(missing.values()))
        )
        ranges = self.created
        for pk in created:
            if ranges and ranges[-1][1] == pk - 1:
                ranges[-1] = (ranges[-1][0], pk)
            else:
                ranges.append((pk, pk))
        for key, identity in missing.items():
            txn[key] = found[identity[0]]

    def _committed_identities(self, process: dict[tuple[str, str, str], int]) -> dict[str, int]:
        if self.committed is None:
            if process:
                self.committed = {}  # what the process remembers; the rest is probed
            else:
                self.sink.pause()
                self.committed = (
                    bulk.known_test_identities(
                        self.repository_id, limit=settings.FLAKEGUARD_IDENTITY_PRELOAD_SIZE
                    )
                    or {}
                )
        return self.committed
