"""The ``ingest_junit`` and ``parse_junit`` commands, as DESIGN.md states them."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ingest.models import TestResult, WorkflowRun
from tests.conftest import REPO_ROOT
from tests.ingest import golden
from tests.ingest.junit_samples import pytest_report, write, write_zip
from tests.ingest.test_archives import Entry, craft_zip, junit_bomb_entry

CASES = [("tests.test_a", "test_one", "passed"), ("tests.test_a", "test_two", "failed")]
COUNT_KEYS = (
    "tests",
    "passed",
    "failures",
    "errors",
    "skipped",
    "flaky_reruns",
    "rerun_failures",
    "error",
)


def run_command(*args: str) -> tuple[dict | list, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return json.loads(out.getvalue()), err.getvalue()


@pytest.fixture
def eager(settings) -> None:
    # These tests exercise the commands in-process; the queue path with real
    # workers is covered in tests/test_pipeline.py.
    settings.CELERY_TASK_ALWAYS_EAGER = True


def write_manifest(path: Path, lines: list[dict | str]) -> Path:
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )
    return path


def manifest_line(run_id: int, files: list) -> dict:
    return {
        "repo": "acme/shop",
        "run_id": run_id,
        "run_attempt": 1,
        "sha": "b" * 40,
        "branch": "main",
        "event": "push",
        "started_at": "2026-09-01T10:00:00Z",
        "workflow": "ci",
        "files": files,
    }


def test_parse_junit_json_lists_files_and_zip_members(tmp_path: Path) -> None:
    plain = write(tmp_path / "one.xml", pytest_report(CASES))
    archive = write_zip(
        tmp_path / "art.zip", {"a/x.xml": pytest_report(CASES), "a/y.xml": b"garbage"}
    )
    not_zip = write(tmp_path / "fake.zip", b"this is not a zip")

    with pytest.raises(SystemExit) as exit_info:
        run_command("parse_junit", str(plain), str(archive), str(not_zip), "--json")
    assert exit_info.value.code == 1  # some file had an error

    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("parse_junit", str(plain), str(archive), str(not_zip), "--json", stdout=out)
    results = json.loads(out.getvalue())
    assert [r["path"] for r in results] == [
        str(plain),
        f"{archive}!a/x.xml",
        f"{archive}!a/y.xml",
        str(not_zip),
    ]
    assert {k: results[0][k] for k in COUNT_KEYS} == {
        "tests": 2, "passed": 1, "failures": 1, "errors": 0, "skipped": 0,
        "flaky_reruns": 0, "rerun_failures": 0, "error": None,
    }  # fmt: skip
    assert results[1]["tests"] == 2 and results[1]["error"] is None
    assert results[2]["error"] and results[2]["tests"] is None
    assert "archive refused" in results[3]["error"]


def test_parse_junit_names_each_refused_member_and_reads_the_others(tmp_path: Path) -> None:
    archive = craft_zip(
        tmp_path / "x.zip",
        [
            Entry("../x.xml"),
            Entry("/abs/x.xml"),
            Entry("C:\\x.xml"),
            Entry("C:/x.xml"),
            Entry("nul.xml\x00.txt"),
            Entry("esc\x1b]0;pwned\x07.xml"),
            junit_bomb_entry("bomb.xml", mib=64),
            Entry("ok.xml", plain=pytest_report(CASES)),
        ],
    )

    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("parse_junit", str(archive), "--json", stdout=out)

    results = {r["path"].removeprefix(f"{archive}!"): r for r in json.loads(out.getvalue())}
    assert results["ok.xml"]["tests"] == 2 and results["ok.xml"]["error"] is None
    errors = {path: r["error"] for path, r in results.items() if path != "ok.xml"}
    assert errors == {
        "../x.xml": "member \"../x.xml\" refused: it climbs out of the archive with '..'",
        "/abs/x.xml": 'member "/abs/x.xml" refused: it is an absolute path',
        "C:\\x.xml": 'member "C:\\\\x.xml" refused: it names a drive',
        "C:/x.xml": 'member "C:/x.xml" refused: it names a drive',
        "nul.xml\\u0000.txt": 'member "nul.xml\\u0000.txt" refused: it holds control characters',
        "esc\\u001b]0;pwned\\u0007.xml": (
            'member "esc\\u001b]0;pwned\\u0007.xml" refused: it holds control characters'
        ),
        "bomb.xml": errors["bomb.xml"],
    }
    assert errors["bomb.xml"].startswith('member "bomb.xml" refused: compression ratio over 200:1')
    assert all(results[path]["tests"] is None for path in errors)

    # The text form prints the same names, escaped: nothing reaches the terminal raw.
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("parse_junit", str(archive), stdout=out)
    assert "\x1b" not in out.getvalue() and "\x00" not in out.getvalue()


def test_parse_junit_agrees_with_the_fixture_goldens() -> None:
    fixtures = golden.fixture_paths()
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:  # the fixtures hold one truncated file
        call_command("parse_junit", *[str(path) for path in fixtures], "--json", stdout=out)
    assert exit_info.value.code == 1
    results = json.loads(out.getvalue())
    assert [r["path"] for r in results] == [str(path) for path in fixtures]
    for fixture, result in zip(fixtures, results, strict=True):
        expected = golden.load(fixture)
        if expected.get("error"):
            assert result["error"], fixture.name
            assert {result[k] for k in COUNT_KEYS if k != "error"} == {None}, fixture.name
            continue
        assert {k: result[k] for k in COUNT_KEYS} == {
            **{k: expected["counts"][k] for k in COUNT_KEYS if k != "error"},
            "error": None,
        }, fixture.name


@pytest.mark.django_db(transaction=True)
def test_ingest_junit_single_run_form_prints_a_json_summary(tmp_path: Path, eager: None) -> None:
    report = write(tmp_path / "linux" / "junit.xml", pytest_report(CASES))
    broken = write(tmp_path / "linux" / "broken.xml", b"<testsuite>")
    args = ["ingest_junit", "--repo", "acme/shop", "--run-id", "77", "--run-attempt", "2", "--sha", "c" * 40,
            "--branch", "feature/x", "--event", "pull_request", "--started-at", "2026-09-01T10:00:00+00:00",
            str(report), str(broken), "--json"]  # fmt: skip

    summary, _ = run_command(*args)
    again, _ = run_command(*args)

    assert summary["runs_imported"] == 1 and summary["runs_skipped"] == 0
    assert summary["results_stored"] == 2
    assert summary["files_refused"][0]["path"] == str(broken)
    assert again["runs_imported"] == 0 and again["runs_skipped"] == 1
    run = WorkflowRun.objects.get()
    assert (run.run_id, run.run_attempt, run.branch, run.event) == (
        77,
        2,
        "feature/x",
        "pull_request",
    )
    assert set(TestResult.objects.values_list("job", flat=True)) == {"linux"}  # the folder


@pytest.mark.django_db(transaction=True)
def test_same_manifest_imported_twice_leaves_the_rows_of_one_import(
    tmp_path: Path, eager: None
) -> None:
    write(tmp_path / "r1" / "junit.xml", pytest_report(CASES))
    write_zip(tmp_path / "r2" / "art.zip", {"junit.xml": pytest_report(CASES)})
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [
            manifest_line(1, ["r1/junit.xml"]),
            manifest_line(2, [{"path": "r2/art.zip", "job": "mac"}]),
        ],
    )

    first, _ = run_command("ingest_junit", "--manifest", str(manifest), "--json")
    rows_after_first = sorted(
        TestResult.objects.values_list("run__run_id", "test__name", "outcome", "job")
    )
    second, _ = run_command("ingest_junit", "--manifest", str(manifest), "--json")

    assert (first["runs_imported"], first["runs_skipped"], first["results_stored"]) == (2, 0, 4)
    assert (second["runs_imported"], second["runs_skipped"], second["results_stored"]) == (0, 2, 0)
    assert (
        sorted(TestResult.objects.values_list("run__run_id", "test__name", "outcome", "job"))
        == rows_after_first
    )
    assert first["files_refused"] == []


@pytest.mark.django_db(transaction=True)
def test_a_run_attempt_without_reports_is_recorded_with_zero_results(
    tmp_path: Path, eager: None
) -> None:
    write(tmp_path / "r1" / "junit.xml", pytest_report(CASES))
    manifest = write_manifest(
        tmp_path / "m.jsonl", [manifest_line(1, ["r1/junit.xml"]), manifest_line(2, [])]
    )

    summary, _ = run_command("ingest_junit", "--manifest", str(manifest), "--json")
    out = io.StringIO()
    call_command("ingest_junit", "--manifest", str(manifest), stdout=out, stderr=io.StringIO())

    assert (summary["runs_imported"], summary["runs_without_reports"]) == (2, 1)
    assert (summary["results_stored"], summary["files_refused"]) == (2, [])
    empty = WorkflowRun.objects.get(run_id=2)
    assert (empty.results_count, empty.files_count, empty.file_errors) == (0, 0, [])
    assert empty.analyzed_at is not None  # analyzed like any run: nothing to score
    # Imported again: skipped like any run already stored, and the exit status is 0.
    assert out.getvalue().startswith("0 run(s) imported, 2 skipped")


@pytest.mark.django_db(transaction=True)
def test_invalid_manifest_lines_are_reported_and_the_rest_imported(
    tmp_path: Path, eager: None
) -> None:
    write(tmp_path / "ok.xml", pytest_report(CASES))
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [
            manifest_line(1, ["ok.xml"]),
            "{not json",
            {**manifest_line(2, ["ok.xml"]), "repo": "no-slash"},
            {**manifest_line(3, ["ok.xml"]), "started_at": "yesterday"},
        ],
    )
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "ingest_junit", "--manifest", str(manifest), "--json", stdout=out, stderr=io.StringIO()
        )

    summary = json.loads(out.getvalue())
    assert exit_info.value.code == 1
    assert summary["runs_imported"] == 1
    assert [e["line"] for e in summary["manifest_errors"]] == [2, 3, 4]
    assert "owner/name" in summary["manifest_errors"][1]["error"]
    assert "ISO-8601" in summary["manifest_errors"][2]["error"]


def test_ingest_junit_without_run_details_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="missing --repo"):
        call_command("ingest_junit", str(tmp_path / "x.xml"))
    with pytest.raises(CommandError, match="manifest not found"):
        call_command("ingest_junit", "--manifest", str(tmp_path / "none.jsonl"))


def test_embedded_default_imports_on_sqlite_without_a_broker(tmp_path: Path) -> None:
    """With nothing configured: SQLite in a file and tasks run in-process."""
    write(tmp_path / "linux" / "junit.xml", pytest_report(CASES))
    # Long enough that rows are written before the cut is found, then taken back.
    many = [("tests.test_big", f"test_{i}", "passed") for i in range(6000)]
    write(tmp_path / "linux" / "cut.xml", pytest_report(many)[:-100])
    manifest = write_manifest(
        tmp_path / "m.jsonl", [manifest_line(1, ["linux/cut.xml", "linux/junit.xml"])]
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'embedded.sqlite3'}"
    manage = [sys.executable, str(REPO_ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, cwd=tmp_path)

    done = subprocess.run(
        [*manage, "ingest_junit", "--manifest", str(manifest), "--json"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip

    summary = json.loads(done.stdout)  # stdout holds the JSON alone
    assert (summary["runs_imported"], summary["results_stored"]) == (1, 2)
    assert [f["path"] for f in summary["files_refused"]] == ["linux/cut.xml"]
    with sqlite3.connect(tmp_path / "embedded.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM ingest_testresult").fetchone() == (2,)
