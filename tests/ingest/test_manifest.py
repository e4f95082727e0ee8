"""Run manifests: each line validated on its own, paths relative to the manifest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.manifest import ManifestError, read_manifest

LINE = {
    "repo": "acme/shop",
    "run_id": 812,
    "run_attempt": 2,
    "sha": "a" * 40,
    "branch": "main",
    "event": "pull_request",
    "started_at": "2026-09-01T12:00:00Z",
    "workflow": "ci",
    "files": ["linux/junit.xml", {"path": "art/junit-mac.zip", "job": "macos"}],
}


def write(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "runs" / "manifest.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_a_valid_line_becomes_a_run_with_files_relative_to_the_manifest(tmp_path: Path) -> None:
    entries, problems = read_manifest(write(tmp_path, LINE))

    assert problems == []
    (entry,) = entries
    assert (entry.run.repo, entry.run.run_id, entry.run.run_attempt) == ("acme/shop", 812, 2)
    assert entry.run.started_at == datetime(2026, 9, 1, 12, tzinfo=UTC)
    linux, mac = entry.files
    assert linux.path == (tmp_path / "runs" / "linux" / "junit.xml").resolve()
    assert (linux.label, linux.folder_label, linux.display) == ("", "linux", "linux/junit.xml")
    assert (mac.label, mac.display) == ("macos", "art/junit-mac.zip")


def test_run_attempt_defaults_to_one_and_blank_lines_are_ignored(tmp_path: Path) -> None:
    line = {k: v for k, v in LINE.items() if k != "run_attempt"}
    entries, problems = read_manifest(write(tmp_path, "", line, "   "))
    assert problems == [] and entries[0].run.run_attempt == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"repo": "shop"}, "owner/name"),
        ({"run_id": "812"}, "run_id must be a positive integer"),
        ({"run_attempt": 0}, "run_attempt must be a positive integer"),
        ({"sha": ""}, "sha is required"),
        ({"started_at": "2026-09-01 12:00"}, "time zone"),
        ({"started_at": "soon"}, "ISO-8601"),
        ({"event": "Push!"}, "event"),
        ({"files": "junit.xml"}, "files must be a list"),
        ({"files": [{"job": "x"}]}, "each file must be"),
    ],
)
def test_each_invalid_line_is_reported_with_its_number(
    tmp_path: Path, change: dict, message: str
) -> None:
    entries, problems = read_manifest(write(tmp_path, LINE, {**LINE, **change}))

    assert len(entries) == 1
    assert [p.line for p in problems] == [2]
    assert message in problems[0].error


def test_a_run_attempt_that_wrote_no_report_is_an_entry_with_no_files(tmp_path: Path) -> None:
    entries, problems = read_manifest(write(tmp_path, {**LINE, "files": []}))

    assert problems == []
    assert entries[0].files == () and entries[0].run.run_id == LINE["run_id"]


def test_a_line_that_is_not_json_is_reported(tmp_path: Path) -> None:
    _, problems = read_manifest(write(tmp_path, '{"repo": '))
    assert problems[0].line == 1 and "not valid JSON" in problems[0].error


def test_a_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "none.jsonl")
