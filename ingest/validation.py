"""Validates report files without storing them: the engine of ``parse_junit``.

Pure: no Django. Limits come in as arguments.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ingest.archives import ArchiveError, ArchiveLimits, iter_junit_members
from ingest.junit import JUnitError, summarize

_COUNTS = ("tests", "passed", "failures", "errors", "skipped", "flaky_reruns", "rerun_failures")


def validate_paths(
    paths: list[Path], *, limits: ArchiveLimits | None = None
) -> list[dict[str, Any]]:
    limits = limits or ArchiveLimits()
    results: list[dict[str, Any]] = []
    for path in paths:
        if path.suffix.lower() == ".zip":
            results.extend(_validate_archive(path, limits))
        else:
            results.append(_validate_file(path))
    return results


def _entry(path: str, counts: dict[str, int] | None, error: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path}
    for key in _COUNTS:
        entry[key] = counts[key] if counts else None
    entry["error"] = error
    return entry


def _validate_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return _entry(str(path), asdict(summarize(stream)), None)
    except JUnitError as exc:
        return _entry(str(path), None, str(exc))
    except FileNotFoundError:
        return _entry(str(path), None, "file not found")
    except OSError as exc:
        return _entry(str(path), None, f"cannot read file: {exc.strerror or exc}")


def _validate_archive(path: Path, limits: ArchiveLimits) -> list[dict[str, Any]]:
    members: list[dict[str, Any]] = []
    try:
        for member, stream in iter_junit_members(path, limits=limits):
            name = f"{path}!{member.name}"
            try:
                members.append(_entry(name, asdict(summarize(stream)), None))
            except JUnitError as exc:
                members.append(_entry(name, None, str(exc)))
    except ArchiveError as exc:
        return [_entry(str(path), None, f"archive refused: {exc}")]
    except FileNotFoundError:
        return [_entry(str(path), None, "file not found")]
    except OSError as exc:
        return [_entry(str(path), None, f"cannot read file: {exc.strerror or exc}")]
    if not members:
        return [_entry(str(path), None, "archive holds no JUnit XML report")]
    return members
