"""Golden files for the JUnit fixtures in tests/ingest/fixtures/junit/.

Each fixture ``NAME.xml`` has a ``NAME.expected.json`` beside it holding what a
correct reader produces: the per-file counts and every ``TestCaseRecord`` field,
record by record, or ``{"error": true}`` when the file must be refused.
``tests/ingest/test_junit.py`` compares against these files and never writes them.

    python -m tests.ingest.golden            # list fixtures whose golden is stale
    python -m tests.ingest.golden --write    # (re)write the goldens from the parser

A rewritten golden holds whatever the parser produces today: read its diff by
eye before committing it, since the point of a golden is to be right.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ingest.junit import JUnitError, Outcome, TestCaseRecord, iter_test_cases, summarize

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "junit"
GOLDEN_SUFFIX = ".expected.json"


def fixture_paths() -> list[Path]:
    return sorted(FIXTURES.glob("*.xml"))


def golden_path(fixture: Path) -> Path:
    return fixture.with_name(fixture.stem + GOLDEN_SUFFIX)


def record_to_json(record: TestCaseRecord) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    data["outcome"] = Outcome(record.outcome).value
    return data


def counts_of(records: Iterable[TestCaseRecord]) -> dict[str, int]:
    """FileSummary's counts plus MANIFEST.json's ``flaky_tests``, worked out from records."""
    records = list(records)
    return {
        "tests": len(records),
        "passed": sum(r.outcome is Outcome.PASSED for r in records),
        "failures": sum(r.has_failure for r in records),
        "errors": sum(r.has_error for r in records),
        "skipped": sum(r.has_skipped for r in records),
        "flaky_reruns": sum(r.flaky_reruns for r in records),
        "rerun_failures": sum(r.rerun_failures for r in records),
        "flaky_tests": sum(
            1 for r in records if r.flaky_reruns and not (r.has_failure or r.has_error)
        ),
    }


def compute(data: bytes) -> dict[str, Any]:
    """What the parser makes of ``data``, in the golden files' shape."""
    try:
        records = list(iter_test_cases(io.BytesIO(data)))
        summarize(io.BytesIO(data))
    except JUnitError:
        return {"error": True}
    return {"counts": counts_of(records), "records": [record_to_json(r) for r in records]}


def load(fixture: Path) -> dict[str, Any]:
    return json.loads(golden_path(fixture).read_text(encoding="utf-8"))


def dump(golden: dict[str, Any]) -> str:
    return json.dumps(golden, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.ingest.golden", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite stale or missing goldens")
    parser.add_argument("names", nargs="*", help="fixture names (default: all), e.g. pytest.xml")
    args = parser.parse_args(argv)

    fixtures = [FIXTURES / name for name in args.names] or fixture_paths()
    stale = 0
    for fixture in fixtures:
        text = dump(compute(fixture.read_bytes()))
        target = golden_path(fixture)
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        stale += 1
        if args.write:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(REPO_ROOT)}")
        else:
            print(f"stale: {target.name}")
    if args.write:
        return 0
    hint = " (--write to update, then review the diff)" if stale else ""
    print(f"{stale} of {len(fixtures)} goldens stale{hint}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
