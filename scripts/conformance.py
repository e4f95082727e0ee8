"""Conformance check of the JUnit reader against the corpus of real-world reports.

The corpus (``$FLAKEGUARD_JUNIT_CORPUS``, by default ``junit-corpus`` in the
``shared`` folder beside the repository) holds JUnit files taken unchanged from
public projects, and a MANIFEST.json whose ``expected`` gives, for each file, the
testcase counts any correct reader produces (definitions at the top of the
manifest; ``expected: null`` means the file must be refused with an error). The
test suite never reads the corpus: ``make conformance`` runs this script instead.

Every file goes through ``manage.py parse_junit --json``, in batches, so that what
is checked is the command's output contract; the script itself needs no Django.
``flaky_tests`` is not in that output, so it is not compared. Each file's sha256
is checked when the manifest gives one, and an XML file the manifest does not
list is a failure too. One line per failing file, then
``conformance: N passed, M failed``. Exit status: 0 when everything agrees, 1 on
any mismatch, 2 when the corpus is missing or parse_junit cannot be run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "junit-corpus"
# Counts parse_junit reports that a manifest entry may assert.
COMPARED = ("tests", "failures", "errors", "skipped", "flaky_reruns", "rerun_failures")
BATCH = 200  # paths per parse_junit run: few Django start-ups, short command lines


class ConformanceError(Exception):
    """The check could not run at all (exit status 2)."""


def corpus_dir(argument: str | None) -> Path:
    configured = argument or os.environ.get("FLAKEGUARD_JUNIT_CORPUS")
    # Absolute, since parse_junit runs from the repository root.
    return (Path(configured) if configured else DEFAULT_CORPUS).absolute()


def load_manifest(corpus: Path) -> list[dict[str, Any]]:
    manifest = corpus / "MANIFEST.json"
    if not manifest.is_file():
        raise ConformanceError(
            f"JUnit corpus not found: {manifest} does not exist. Put the corpus at "
            f"{DEFAULT_CORPUS} or point FLAKEGUARD_JUNIT_CORPUS at it."
        )
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConformanceError(f"{manifest} is not a corpus manifest: {exc}") from exc
    if not files:
        raise ConformanceError(f"{manifest} lists no files")
    return files


def batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def parse_junit(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """parse_junit's JSON result for each path, keyed by the path as given."""
    results: dict[str, dict[str, Any]] = {}
    for batch in batches(paths, BATCH):
        done = subprocess.run(
            [sys.executable, str(REPO_ROOT / "manage.py"), "parse_junit", "--json"]
            + [str(path) for path in batch],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        # Exit status 1 only says that some file was refused, as some must be.
        if done.returncode not in (0, 1):
            raise ConformanceError(
                f"manage.py parse_junit failed (exit status {done.returncode}):\n{done.stderr}"
            )
        try:
            output = json.loads(done.stdout)
        except ValueError as exc:
            raise ConformanceError(
                f"manage.py parse_junit --json printed no JSON ({exc}):\n{done.stderr}"
            ) from exc
        for result in output:
            results[result["path"]] = result
    return results


def compare(entry: dict[str, Any], path: Path, result: dict[str, Any] | None) -> list[str]:
    """What is wrong with one file's result; empty when it conforms."""
    problems: list[str] = []
    if not path.is_file():
        return ["listed in MANIFEST.json but missing from the corpus"]
    digest = entry.get("sha256")
    if digest and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        problems.append("sha256 differs from MANIFEST.json (the file changed)")
    if result is None:
        return [*problems, "parse_junit gave no result for this file"]
    expected = entry.get("expected")
    if expected is None:
        if not result.get("error"):
            problems.append(
                "expected an error, got "
                + ", ".join(f"{key}={result.get(key)}" for key in COMPARED)
            )
        return problems
    if result.get("error"):
        return [*problems, f"unexpected error: {result['error']}"]
    for key in COMPARED:
        if key in expected and result.get(key) != expected[key]:
            problems.append(f"{key} {result.get(key)} != expected {expected[key]}")
    return problems


def check(corpus: Path) -> tuple[list[str], int]:
    """(one line per failing file, number of files that conform)."""
    entries = load_manifest(corpus)
    paths = [corpus / entry["path"] for entry in entries]
    results = parse_junit([path for path in paths if path.is_file()])

    failures: list[str] = []
    passed = 0
    for entry, path in zip(entries, paths, strict=True):
        problems = compare(entry, path, results.get(str(path)))
        if problems:
            failures.append(f"FAIL {entry['path']}: " + "; ".join(problems))
        else:
            passed += 1

    listed = {path.resolve() for path in paths}
    for path in sorted(corpus.rglob("*.xml")):
        if path.resolve() not in listed:
            failures.append(f"FAIL {path.relative_to(corpus)}: not listed in MANIFEST.json")
    return failures, passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/conformance.py",
        description="Compare parse_junit's counts with the JUnit corpus's MANIFEST.json.",
    )
    parser.add_argument(
        "corpus",
        nargs="?",
        help="corpus folder (default: $FLAKEGUARD_JUNIT_CORPUS, else ../shared/junit-corpus)",
    )
    args = parser.parse_args(argv)
    try:
        failures, passed = check(corpus_dir(args.corpus))
    except ConformanceError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    for line in failures:
        print(line)
    print(f"conformance: {passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
