"""Whole-command benchmark: ``manage.py ingest_junit`` of one large ZIP, storing and analysis together.

What a CI with one big test suite does to FlakeGuard on the embedded default
pointed at PostgreSQL (``DATABASE_URL`` set, no broker, so the analysis runs
in the command): one artifact of ``--tests`` results (0.5% failing, 0.5%
skipped) imported as a repository's first run, when every test is new, and
then as its next run, when every test is known and its score is advanced.
Each round uses a repository of its own; the command runs as a subprocess,
timed from start to exit. Prints the medians in results/s.
Needs PostgreSQL in DATABASE_URL (``make bench`` starts one that syncs to disk
as production does).

    python -m bench.command [--tests 520000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET = 150_000  # results/s, storing and analysis together


def write_artifact(path: Path, tests: int) -> Path:
    """A ZIP holding one pytest-style JUnit report of ``tests`` test cases."""
    report = path.with_suffix(".xml")
    with report.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n')
        out.write(f'<testsuite name="pytest" tests="{tests}">\n')
        for n in range(tests):
            module, case = f"tests.test_mod{n % 1000}", f"test_case_{n}"
            if n % 200 == 7:
                out.write(
                    f'<testcase classname="{module}" name="{case}" time="0.02">'
                    f'<failure message="AssertionError: expected {n} got {n + 1}">'
                    "assert False</failure></testcase>\n"
                )
            elif n % 200 == 11:
                out.write(
                    f'<testcase classname="{module}" name="{case}" time="0">'
                    '<skipped message="needs a GPU"/></testcase>\n'
                )
            else:
                out.write(f'<testcase classname="{module}" name="{case}" time="0.01"/>\n')
        out.write("</testsuite>\n</testsuites>\n")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(report, "reports/junit.xml")
    report.unlink()
    return path


def import_once(artifact: Path, *, repo: str, run_id: int) -> tuple[float, int]:
    """Wall time of the whole command and the results it stored."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # analysis in-process
    env["LOG_LEVEL"] = "WARNING"
    command = [
        sys.executable, "manage.py", "ingest_junit", "--repo", repo, "--run-id", str(run_id),
        "--run-attempt", "1", "--sha", f"{run_id:040x}", "--branch", "main", "--event", "push",
        "--started-at", f"2026-09-{run_id:02d}T12:00:00Z", "--job", "linux", str(artifact),
        "--json",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"ingest_junit failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, int(json.loads(done.stdout)["results_stored"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, default=520_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("bench.command needs PostgreSQL in DATABASE_URL (make bench starts one)")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO_ROOT, check=True
    )
    first: list[float] = []
    following: list[float] = []
    with tempfile.TemporaryDirectory(prefix="flakeguard-bench-") as tmp:
        artifact = write_artifact(Path(tmp) / "junit.zip", args.tests)
        size = artifact.stat().st_size
        print(f"artifact: {args.tests:,} results, {size / 1e6:.1f} MB zipped", file=sys.stderr)
        for round_no in range(1, args.rounds + 1):
            repo = f"bench/command-{os.getpid()}-{round_no}"
            seconds, stored = import_once(artifact, repo=repo, run_id=1)
            assert stored == args.tests, stored
            first.append(stored / seconds)
            seconds, stored = import_once(artifact, repo=repo, run_id=2)
            assert stored == args.tests, stored
            following.append(stored / seconds)
            print(
                f"round {round_no}: first run {first[-1]:,.0f} results/s, "
                f"next run {following[-1]:,.0f} results/s",
                file=sys.stderr,
            )
    print()
    print(
        f"ingest_junit, one ZIP of {args.tests:,} results, storing and analysis in the command "
        f"(PostgreSQL, median of {args.rounds})"
    )
    print(f"  {'first run of a repository':<28} {statistics.median(first):>10,.0f} results/s")
    print(f"  {'next run (tests known)':<28} {statistics.median(following):>10,.0f} results/s")
    print(f"  {'target':<28} {f'>= {TARGET:,}':>10} results/s")


if __name__ == "__main__":
    main()
