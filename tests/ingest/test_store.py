"""Storing runs: every result once, bad files refused alone, identities mapped in bulk."""

from __future__ import annotations

import gc
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from ingest.models import TestCase, TestResult, WorkflowRun
from ingest.runs import RunFile, RunInfo
from ingest.store import store_run
from tests.ingest.junit_samples import pytest_report, write, write_zip
from tests.ingest.test_archives import UNSAFE_NAMES, Entry, MiB, craft_zip, junit_bomb_entry

RUN = RunInfo(
    repo="acme/shop",
    run_id=812,
    run_attempt=1,
    sha="a" * 40,
    branch="main",
    event="push",
    workflow="ci",
    started_at=datetime(2026, 9, 1, 12, tzinfo=UTC),
)

CASES = [
    ("tests.test_cart.TestCart", "test_add", "passed"),
    ("tests.test_cart.TestCart", "test_remove", "failed"),
    ("tests.test_db", "test_connect", "error"),
    ("tests.test_win", "test_paths", "skipped"),
]


def outcomes_by_test(run: WorkflowRun) -> dict[str, str]:
    return {
        f"{r.test.classname}::{r.test.name}": r.outcome
        for r in TestResult.objects.filter(run=run).select_related("test")
    }


@pytest.mark.django_db
def test_store_run_writes_every_result_with_its_outcome(tmp_path: Path) -> None:
    report = write(tmp_path / "linux" / "junit.xml", pytest_report(CASES))

    outcome = store_run(run=RUN, files=[RunFile(path=report, label="linux-py3.11")])

    assert outcome.imported and outcome.results_stored == 4 and outcome.files_refused == []
    run = WorkflowRun.objects.get(run_id=812, run_attempt=1)
    assert (run.results_count, run.files_count, run.file_errors) == (4, 1, [])
    assert outcomes_by_test(run) == {
        "tests.test_cart.TestCart::test_add": "passed",
        "tests.test_cart.TestCart::test_remove": "failed",
        "tests.test_db::test_connect": "error",
        "tests.test_win::test_paths": "skipped",
    }
    failed = TestResult.objects.get(run=run, outcome="failed")
    assert failed.job == "linux-py3.11"
    assert failed.message == "AssertionError: assert 3 == 4"
    assert len(failed.fingerprint) == 16
    assert failed.duration == pytest.approx(0.01)
    assert TestResult.objects.get(run=run, outcome="passed").message == ""


@pytest.mark.django_db
def test_same_run_attempt_stored_twice_changes_nothing(tmp_path: Path) -> None:
    report = write(tmp_path / "junit.xml", pytest_report(CASES))
    store_run(run=RUN, files=[RunFile(path=report)])

    again = store_run(run=RUN, files=[RunFile(path=report)])

    assert not again.imported and again.results_stored == 0
    assert WorkflowRun.objects.count() == 1
    assert TestResult.objects.count() == 4
    assert TestCase.objects.count() == 4


@pytest.mark.django_db
def test_malformed_and_missing_files_fail_alone_and_are_recorded(tmp_path: Path) -> None:
    good = write(tmp_path / "good.xml", pytest_report(CASES))
    bad = write(tmp_path / "bad.xml", b"<testsuite><testcase name='x'>")
    missing = tmp_path / "nope.xml"

    outcome = store_run(
        run=RUN,
        files=[
            RunFile(path=bad, display="bad.xml"),
            RunFile(path=good),
            RunFile(path=missing, display="nope.xml"),
        ],
    )

    assert outcome.results_stored == 4
    refused = {f["path"]: f["error"] for f in outcome.files_refused}
    assert set(refused) == {"bad.xml", "nope.xml"}
    assert refused["nope.xml"] == "file not found"
    assert refused["bad.xml"]  # a clear parser message
    run = WorkflowRun.objects.get()
    assert run.file_errors == outcome.files_refused
    assert TestResult.objects.count() == 4


@pytest.mark.django_db
def test_partly_parsed_bad_file_leaves_no_rows_and_later_files_reuse_its_tests(
    tmp_path: Path,
) -> None:
    # The truncated report is long enough that its first 5,000 results are
    # written before the parser meets the cut; they must be taken back, and a
    # later report naming the same tests must still store them.
    many = [("tests.test_big", f"test_{i}", "passed") for i in range(6000)]
    truncated = pytest_report(many)[:-200]
    bad = write(tmp_path / "a" / "truncated.xml", truncated)
    good = write(tmp_path / "b" / "junit.xml", pytest_report(many[:1000]))

    outcome = store_run(run=RUN, files=[RunFile(path=bad), RunFile(path=good)])

    assert outcome.results_stored == 1000
    assert len(outcome.files_refused) == 1
    assert TestResult.objects.count() == 1000
    assert sorted(TestResult.objects.values_list("position", flat=True)) == list(range(5001, 6001))


@pytest.mark.django_db
def test_job_loads_count_the_results_and_failures_each_job_keeps(tmp_path: Path) -> None:
    linux = write(tmp_path / "linux" / "junit.xml", pytest_report(CASES))
    macos = write(tmp_path / "macos" / "junit.xml", pytest_report(CASES[:2]))
    many = [("tests.test_big", f"test_{i}", "failed") for i in range(6000)]
    truncated = write(tmp_path / "win" / "cut.xml", pytest_report(many)[:-200])

    store_run(
        run=RUN,
        files=[
            RunFile(path=linux, label="linux"),
            RunFile(path=truncated, label="windows"),
            RunFile(path=macos, label="macos"),
        ],
    )

    # failed and error count as failures; the refused report's rows are gone
    assert WorkflowRun.objects.get().job_loads == {"linux": [4, 2], "macos": [2, 1]}

    # Counted as the rows are written when no report is refused.
    retry = RunInfo(**{**RUN.__dict__, "run_attempt": 2})
    store_run(
        run=retry, files=[RunFile(path=linux, label="linux"), RunFile(path=macos, label="macos")]
    )
    assert WorkflowRun.objects.get(run_attempt=2).job_loads == {"linux": [4, 2], "macos": [2, 1]}


@pytest.mark.django_db
def test_archive_refused_at_a_later_member_takes_back_the_members_before_it(tmp_path: Path) -> None:
    first = pytest_report([("t", f"test_{i}", "passed") for i in range(600)])
    archive = write_zip(tmp_path / "art.zip", {"a/1.xml": first, "a/2.xml": first})
    plain = write(tmp_path / "plain.xml", pytest_report(CASES))

    # The first member fits the total cap, the second pushes past it.
    with override_settings(FLAKEGUARD_ZIP_MAX_TOTAL_BYTES=len(first) + 1000):
        outcome = store_run(
            run=RUN, files=[RunFile(path=archive, display="art.zip"), RunFile(path=plain)]
        )

    assert [f["path"] for f in outcome.files_refused] == ["art.zip"]
    assert outcome.results_stored == 4
    assert TestResult.objects.count() == 4


@pytest.mark.django_db
def test_zip_artifact_members_are_stored_and_a_bad_member_is_named(tmp_path: Path) -> None:
    archive = write_zip(
        tmp_path / "junit-linux.zip",
        {
            "reports/unit.xml": pytest_report(CASES[:2]),
            "reports/broken.xml": b"not xml at all",
            "reports/readme.txt": b"hello",
        },
    )

    outcome = store_run(
        run=RUN, files=[RunFile(path=archive, display="junit-linux.zip", label="linux")]
    )

    assert outcome.results_stored == 2
    assert [f["path"] for f in outcome.files_refused] == ["junit-linux.zip!reports/broken.xml"]
    assert set(TestResult.objects.values_list("job", flat=True)) == {"linux"}


@pytest.mark.django_db
@pytest.mark.timeout(120)
def test_bomb_member_is_refused_before_anything_is_stored_and_the_rest_of_its_zip_kept(
    tmp_path: Path,
) -> None:
    bomb = junit_bomb_entry("reports/bomb.xml")  # 512 MiB of <testcase>s in 3.5 MB
    archive = craft_zip(
        tmp_path / "art.zip",
        [
            Entry("reports/unit.xml", plain=pytest_report(CASES[:2])),
            bomb,
            Entry("reports/more.xml", plain=pytest_report(CASES[2:])),
        ],
    )

    outcome = store_run(run=RUN, files=[RunFile(path=archive, display="art.zip", label="linux")])

    [refused] = outcome.files_refused
    assert refused["path"] == "art.zip!reports/bomb.xml"
    assert refused["error"].startswith(
        'member "reports/bomb.xml" refused: compression ratio over 200:1 ('
    )
    produced = int(re.search(r"\(([\d,]+) bytes from", refused["error"])[1].replace(",", ""))
    assert produced <= 2 * MiB  # inflated before the refusal, of 512 MiB
    # The other members are stored; of the bomb, not even its test's identity reached
    # PostgreSQL: the parser never saw a byte of it, so no row was written and taken back.
    assert outcome.results_stored == 4 and outcome.files_stored == 2
    run = WorkflowRun.objects.get()
    assert (run.results_count, run.files_count, run.file_errors) == (4, 2, [refused])
    assert TestResult.objects.count() == 4
    assert not TestCase.objects.filter(classname="bomb.Boom").exists()


@pytest.mark.django_db
def test_members_with_unsafe_names_are_refused_alone_and_named(tmp_path: Path) -> None:
    names = [name for name, _ in UNSAFE_NAMES]
    archive = craft_zip(
        tmp_path / "evil.zip",
        [
            *(
                Entry(name, plain=pytest_report([("evil", f"t{i}", "passed")]), flags=0x800)
                for i, name in enumerate(names)
            ),
            Entry("good.xml", plain=pytest_report(CASES)),
        ],
    )

    outcome = store_run(run=RUN, files=[RunFile(path=archive, display="evil.zip")])

    assert outcome.results_stored == 4
    assert len(outcome.files_refused) == len(names)
    paths = {entry["path"]: entry["error"] for entry in outcome.files_refused}
    assert paths["evil.zip!../../etc/passwd.xml"] == (
        "member \"../../etc/passwd.xml\" refused: it climbs out of the archive with '..'"
    )
    assert paths["evil.zip!report.xml\\u0000.sh"] == (
        'member "report.xml\\u0000.sh" refused: it holds control characters'
    )
    assert all(path.isprintable() and error.isprintable() for path, error in paths.items())
    assert WorkflowRun.objects.get().file_errors == outcome.files_refused
    assert not TestCase.objects.filter(classname="evil").exists()


@pytest.mark.django_db
def test_refused_archive_stores_nothing_of_it_and_keeps_other_files(tmp_path: Path) -> None:
    # Too many members for the configured cap: the whole artifact is refused,
    # including the members that were fine.
    members = {f"r/{i}.xml": pytest_report([("t", f"test_{i}", "passed")]) for i in range(5)}
    archive = write_zip(tmp_path / "big.zip", members)
    plain = write(tmp_path / "plain.xml", pytest_report(CASES))

    with override_settings(FLAKEGUARD_ZIP_MAX_MEMBERS=3):
        outcome = store_run(
            run=RUN, files=[RunFile(path=archive, display="big.zip"), RunFile(path=plain)]
        )

    assert outcome.results_stored == 4
    assert [f["path"] for f in outcome.files_refused] == ["big.zip"]
    assert "5" in outcome.files_refused[0]["error"]
    assert TestResult.objects.count() == 4


@pytest.mark.django_db
def test_label_comes_from_job_then_report_then_folder(tmp_path: Path) -> None:
    explicit = write(tmp_path / "x" / "a.xml", pytest_report([("c", "t1", "passed")]))
    from_props = write(
        tmp_path / "y" / "b.xml",
        pytest_report([("c", "t2", "passed")], properties={"job": "windows-py3.12"}),
    )
    from_folder = write(tmp_path / "macos" / "c.xml", pytest_report([("c", "t3", "passed")]))

    store_run(
        run=RUN,
        files=[
            RunFile(path=explicit, label="linux", folder_label="x"),
            RunFile(path=from_props, folder_label="y"),
            RunFile(path=from_folder, folder_label="macos"),
        ],
    )

    labels = dict(TestResult.objects.values_list("test__name", "job"))
    assert labels == {"t1": "linux", "t2": "windows-py3.12", "t3": "macos"}


@pytest.mark.django_db
def test_one_identity_per_test_across_spellings_and_runs(tmp_path: Path) -> None:
    first = write(tmp_path / "1.xml", pytest_report([("tests.Test Cart", "test_add", "passed")]))
    second = write(
        tmp_path / "2.xml", pytest_report([("tests.Test   Cart ", "test_add", "failed")])
    )

    store_run(run=RUN, files=[RunFile(path=first)])
    store_run(run=RunInfo(**{**RUN.__dict__, "run_attempt": 2}), files=[RunFile(path=second)])

    assert TestCase.objects.count() == 1
    assert TestResult.objects.count() == 2


@pytest.mark.django_db
def test_identity_mapping_is_set_based_not_per_test(
    tmp_path: Path, django_assert_max_num_queries
) -> None:
    cases = [(f"tests.mod{i % 40}", f"test_{i}", "passed") for i in range(12_000)]
    report = write(tmp_path / "junit.xml", pytest_report(cases))

    # 12,000 tests in batches of 5,000: a handful of statements per batch,
    # never one per test case.
    with django_assert_max_num_queries(25):
        outcome = store_run(run=RUN, files=[RunFile(path=report)])

    assert outcome.results_stored == 12_000
    assert TestCase.objects.count() == 12_000


@pytest.mark.django_db(transaction=True)
def test_same_run_ingested_by_two_workers_at_once_is_stored_once(tmp_path: Path) -> None:
    cases = [
        (f"tests.mod{i % 20}", f"test_{i}", "failed" if i % 7 == 0 else "passed")
        for i in range(3000)
    ]
    report = write(tmp_path / "junit.xml", pytest_report(cases))
    barrier = threading.Barrier(2)
    outcomes = []
    errors = []

    def worker() -> None:
        try:
            barrier.wait()
            outcomes.append(store_run(run=RUN, files=[RunFile(path=report)]))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(o.imported for o in outcomes) == [False, True]
    assert WorkflowRun.objects.count() == 1
    assert TestResult.objects.count() == 3000
    assert TestCase.objects.count() == 3000


def _test_ids_by_position(run: WorkflowRun) -> dict[int, int]:
    return dict(TestResult.objects.filter(run=run).values_list("position", "test_id"))


@pytest.mark.django_db
def test_a_process_that_forgot_a_repository_reads_its_tests_in_one_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test.utils import CaptureQueriesContext

    from ingest import store

    known = [(f"tests.mod{i % 40}", f"test_{i}", "passed") for i in range(12_000)]
    first = store_run(
        run=RUN, files=[RunFile(path=write(tmp_path / "1.xml", pytest_report(known)))]
    )
    # A new process: a CLI import, or a worker that has not seen the repository.
    monkeypatch.setattr(store, "_PROCESS_IDENTITIES", {})
    added = [("tests.new", f"test_new_{i}", "failed") for i in range(5)]
    report = write(tmp_path / "2.xml", pytest_report([*known[:6000], *added, *known[6000:]]))

    with CaptureQueriesContext(connection) as queries:
        second = store_run(
            run=RunInfo(**{**RUN.__dict__, "run_id": 813}), files=[RunFile(path=report)]
        )

    preloads = [q["sql"] for q in queries if "SELECT identity, id FROM" in q["sql"]]
    assert len(preloads) == 1
    assert second.results_stored == 12_005
    assert TestCase.objects.count() == 12_005
    before = _test_ids_by_position(WorkflowRun.objects.get(pk=first.run_pk))
    after = _test_ids_by_position(WorkflowRun.objects.get(pk=second.run_pk))
    # Every known test keeps its row; the five new ones sit where the report put them.
    assert [after[p] for p in range(1, 6001)] == [before[p] for p in range(1, 6001)]
    assert [after[p] for p in range(6006, 12_006)] == [before[p] for p in range(6001, 12_001)]
    new_tests = TestCase.objects.filter(name__startswith="test_new_")
    assert sorted(after[p] for p in range(6001, 6006)) == sorted(t.pk for t in new_tests)
    assert gc.isenabled()  # the cycle collector, held off while storing, is back


@pytest.mark.django_db
@override_settings(FLAKEGUARD_IDENTITY_PRELOAD_SIZE=1000)
def test_a_repository_larger_than_the_preload_is_looked_up_test_by_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test.utils import CaptureQueriesContext

    from ingest import store

    cases = [(f"tests.mod{i % 40}", f"test_{i}", "passed") for i in range(3000)]
    report = write(tmp_path / "1.xml", pytest_report(cases))
    first = store_run(run=RUN, files=[RunFile(path=report)])
    monkeypatch.setattr(store, "_PROCESS_IDENTITIES", {})

    with CaptureQueriesContext(connection) as queries:
        second = store_run(
            run=RunInfo(**{**RUN.__dict__, "run_id": 813}), files=[RunFile(path=report)]
        )

    assert not [q for q in queries if "SELECT identity, id FROM" in q["sql"]]
    assert TestCase.objects.count() == 3000
    assert _test_ids_by_position(WorkflowRun.objects.get(pk=second.run_pk)) == (
        _test_ids_by_position(WorkflowRun.objects.get(pk=first.run_pk))
    )
