"""Reads run manifests (one JSON object per line) into validated run descriptions.

Pure: no Django. Each line is checked on its own so that one bad line is
reported with its number and reason while the other runs still import.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.runs import RunFile, RunInfo
from ingest.timestamps import parse_timestamp

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# GitHub event names: push and pull_request mostly, schedule and others allowed.
_EVENT = re.compile(r"^[a-z_]+$")


class ManifestError(ValueError):
    """The manifest cannot be read at all (missing file, not text)."""


@dataclass(frozen=True)
class ManifestEntry:
    line: int
    run: RunInfo
    files: tuple[RunFile, ...]


@dataclass(frozen=True)
class ManifestProblem:
    line: int
    error: str


def read_manifest(path: Path) -> tuple[list[ManifestEntry], list[ManifestProblem]]:
    """Parse every line; return the valid entries and a problem per invalid line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from None
    base = path.resolve().parent
    entries: list[ManifestEntry] = []
    problems: list[ManifestProblem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            entries.append(parse_entry(obj, base=base, line=number))
        except json.JSONDecodeError as exc:
            problems.append(
                ManifestProblem(number, f"not valid JSON: {exc.msg} at column {exc.colno}")
            )
        except ValueError as exc:
            problems.append(ManifestProblem(number, str(exc)))
    return entries, problems


def parse_entry(obj: Any, *, base: Path, line: int = 0) -> ManifestEntry:
    if not isinstance(obj, dict):
        raise ValueError("each line must be a JSON object")
    repo = _required_str(obj, "repo")
    if not _REPO.match(repo):
        raise ValueError(f"repo must look like owner/name, got {repo!r}")
    run = RunInfo(
        repo=repo,
        run_id=_positive_int(obj, "run_id", None),
        run_attempt=_positive_int(obj, "run_attempt", 1),
        sha=_required_str(obj, "sha"),
        branch=_optional_str(obj, "branch"),
        event=_event(obj),
        workflow=_optional_str(obj, "workflow"),
        started_at=parse_timestamp(obj.get("started_at"), field="started_at", required=True),
        completed_at=parse_timestamp(obj.get("completed_at"), field="completed_at"),
    )
    files = obj.get("files")
    # An empty list is a run attempt that produced no report: recorded, not refused.
    if not isinstance(files, list):
        raise ValueError("files must be a list of report paths (empty when the run wrote none)")
    return ManifestEntry(line=line, run=run, files=tuple(_run_file(f, base) for f in files))


def _run_file(entry: Any, base: Path) -> RunFile:
    if isinstance(entry, str):
        rel, label = entry, ""
    elif isinstance(entry, dict) and isinstance(entry.get("path"), str):
        rel, label = entry["path"], entry.get("job") or ""
        if not isinstance(label, str):
            raise ValueError("a file's job must be a string")
    else:
        raise ValueError('each file must be a path or {"path": ..., "job": ...}')
    if not rel.strip():
        raise ValueError("a file path is empty")
    path = Path(rel)
    if not path.is_absolute():
        path = base / path
    # Without an explicit job, the folder the report sits in names the configuration
    # unless the report itself says (properties, hostname); the store decides.
    return RunFile(path=path, label=label, display=rel, folder_label=Path(rel).parent.name)


def _required_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} is required (a non-empty string)")
    return value.strip()


def _optional_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value.strip()


def _positive_int(obj: dict[str, Any], key: str, default: int | None) -> int:
    value = obj.get(key, default)
    if value is None:
        raise ValueError(f"{key} is required (a positive integer)")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value


def _event(obj: dict[str, Any]) -> str:
    event = _optional_str(obj, "event") or "push"
    if not _EVENT.match(event):
        raise ValueError(
            f"event must be a GitHub event name such as push or pull_request, got {event!r}"
        )
    return event
