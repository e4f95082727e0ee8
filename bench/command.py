"""Whole-command benchmark: ``manage.py ingest_junit`` of one large ZIP, storing and analysis together.

What a CI with one big test suite does to FlakeGuard on the embedded default
pointed at PostgreSQL (``DATABASE_URL`` set, no broker, so the analysis runs
in the command): one artifact of ``--tests`` results (0.5% failing, 0.5%
skipped) imported as a repository's first run, when every test is new, and
then as its next run, when every test is known and its score is advanced.
Each round uses a repository of its own; the command runs as a subprocess,
timed from start to exit. Then the steady state, the runs a repository with a
history receives every day: its history is brought to ``--history`` runs in
SQL (copies of the second run, then a recompute, so every test has a verdict
and the stable ones are at rest), and the next imports are timed. Last, the
rows of the latest run are written again by a bare binary COPY into the same
table, the most storing alone can do on this server. Prints the medians in
results/s, then the peak memory of the command on one run of
``--memory-tests`` tests (a first run and a next one).
Needs PostgreSQL in DATABASE_URL (``make bench`` starts one that syncs to disk
as production does).

    python -m bench.command [--tests 520000] [--rounds 3] [--memory-tests 1000000]
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
MEMORY_TARGET_MB = 400  # peak of the analysis of a run of 1,000,000 tests


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


def import_once(artifact: Path, *, repo: str, run_id: int) -> tuple[float, int, float]:
    """Wall time of the whole command, the results it stored and its peak RSS in MB."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # analysis in-process
    env["LOG_LEVEL"] = "WARNING"
    command = [
        sys.executable, "manage.py", "ingest_junit", "--repo", repo, "--run-id", str(run_id),
        "--run-attempt", "1", "--sha", f"{run_id:040x}", "--branch", "main", "--event", "push",
        "--started-at", f"2026-09-{run_id:02d}T12:00:00Z", "--job", "linux", str(artifact),
        "--json",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if process.returncode != 0:
            sys.exit(f"ingest_junit failed ({process.returncode}):\n{err.read()[-3000:].decode()}")
        stored = int(json.loads(out.read())["results_stored"])
    return seconds, stored, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def seed_history(repo: str, *, runs: int) -> None:
    """Bring the repository to ``runs`` analyzed runs: copies of its last, then a recompute."""
    code = f"""
from django.db import connection
from analysis.services import recompute_repository
from ingest.models import Repository, WorkflowRun
repository = Repository.objects.get(full_name={repo!r})
last = WorkflowRun.objects.filter(repository=repository).order_by("-pk").first()
have = WorkflowRun.objects.filter(repository=repository).count()
with connection.cursor() as cursor:
    for n in range(have + 1, {runs} + 1):
        cursor.execute(
            "INSERT INTO ingest_workflowrun (repository_id, run_id, run_attempt, sha, branch, "
            "event, workflow, started_at, ingested_at, results_count, files_count, file_errors, "
            "analyzed_at, job_loads, job_fingerprints) SELECT repository_id, 1000 + %s, 1, "
            "lpad(to_hex(1000 + %s), 40, '0'), branch, event, workflow, started_at + %s * interval "
            "'1 minute', now(), results_count, files_count, file_errors, now(), job_loads, "
            "job_fingerprints FROM ingest_workflowrun WHERE id = %s RETURNING id",
            [n, n, n, last.pk],
        )
        (run_pk,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO ingest_testresult (run_id, test_id, position, outcome, duration, job, "
            "flaky_reruns, rerun_failures, message, fingerprint) SELECT %s, test_id, position, "
            "outcome, duration, job, flaky_reruns, rerun_failures, message, fingerprint "
            "FROM ingest_testresult WHERE run_id = %s",
            [run_pk, last.pk],
        )
recompute_repository(repository=repository)
"""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code], cwd=REPO_ROOT, check=True
    )


def bare_copy_rate(repo: str, *, rounds: int) -> list[float]:
    """Rows/s of a bare binary COPY of the repository's last run's rows, committed.

    The same rows, table, indexes and server as the imports, with no parsing,
    no identities and no analysis: the most any import can store per second.
    Each copy is taken back afterwards.
    """
    code = f"""
import json, time
from django.db import connection, transaction
from ingest import bulk
from ingest.models import Repository, TestResult, WorkflowRun
repository = Repository.objects.get(full_name={repo!r})
last = WorkflowRun.objects.filter(repository=repository).order_by("-pk").first()
template = list(
    TestResult.objects.filter(run=last).order_by("position").values_list(*bulk.RESULT_COLUMNS)
)
rates = []
for n in range({rounds}):
    with transaction.atomic():
        run_pk = bulk.insert_run_if_absent(
            repository_id=repository.pk, run_id=900_000 + n, run_attempt=1, sha="0" * 40,
            branch=last.branch, event=last.event, workflow=last.workflow,
            started_at=last.started_at, completed_at=None,
        )
        rows = [(run_pk, *row[1:]) for row in template]
        started = time.perf_counter()
        bulk.write_results(rows)
    rates.append(len(rows) / (time.perf_counter() - started))
    with transaction.atomic():
        TestResult.objects.filter(run_id=run_pk).delete()
        WorkflowRun.objects.filter(pk=run_pk).delete()
print(json.dumps(rates))
"""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, default=520_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--history", type=int, default=12, help="runs of history before the steady state"
    )
    parser.add_argument(
        "--memory-tests",
        type=int,
        default=1_000_000,
        help="tests of the run whose peak memory is measured (0: skip)",
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("bench.command needs PostgreSQL in DATABASE_URL (make bench starts one)")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO_ROOT, check=True
    )
    first: list[float] = []
    following: list[float] = []
    steady: list[float] = []
    peaks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="flakeguard-bench-") as tmp:
        artifact = write_artifact(Path(tmp) / "junit.zip", args.tests)
        size = artifact.stat().st_size
        print(f"artifact: {args.tests:,} results, {size / 1e6:.1f} MB zipped", file=sys.stderr)
        for round_no in range(1, args.rounds + 1):
            repo = f"bench/command-{os.getpid()}-{round_no}"
            seconds, stored, _ = import_once(artifact, repo=repo, run_id=1)
            assert stored == args.tests, stored
            first.append(stored / seconds)
            seconds, stored, _ = import_once(artifact, repo=repo, run_id=2)
            assert stored == args.tests, stored
            following.append(stored / seconds)
            print(
                f"round {round_no}: first run {first[-1]:,.0f} results/s, "
                f"next run {following[-1]:,.0f} results/s",
                file=sys.stderr,
            )
        repo = f"bench/command-{os.getpid()}-steady"
        for run_id in (1, 2):
            import_once(artifact, repo=repo, run_id=run_id)
        seed_history(repo, runs=args.history)
        for round_no in range(1, args.rounds + 1):
            seconds, stored, _ = import_once(artifact, repo=repo, run_id=2 + round_no)
            assert stored == args.tests, stored
            steady.append(stored / seconds)
            print(f"steady state, import {round_no}: {steady[-1]:,.0f} results/s", file=sys.stderr)
        ceiling = bare_copy_rate(repo, rounds=args.rounds)
        print(
            "bare COPY of the same rows: "
            + ", ".join(f"{rate:,.0f}" for rate in ceiling)
            + " rows/s",
            file=sys.stderr,
        )
        if args.memory_tests:
            artifact.unlink()
            artifact = write_artifact(Path(tmp) / "large.zip", args.memory_tests)
            repo = f"bench/command-{os.getpid()}-memory"
            for run_id in (1, 2):  # every test new, then every test known and advanced
                seconds, stored, peak = import_once(artifact, repo=repo, run_id=run_id)
                assert stored == args.memory_tests, stored
                peaks.append(peak)
                print(
                    f"{args.memory_tests:,} results, run {run_id}: {seconds:.1f}s, "
                    f"peak RSS {peak:,.0f} MB",
                    file=sys.stderr,
                )
    print()
    print(
        f"ingest_junit, one ZIP of {args.tests:,} results, storing and analysis in the command "
        f"(PostgreSQL, median of {args.rounds})"
    )
    print(f"  {'first run of a repository':<28} {statistics.median(first):>10,.0f} results/s")
    print(f"  {'next run (tests known)':<28} {statistics.median(following):>10,.0f} results/s")
    print(
        f"  {f'after {args.history} runs (steady)':<28} "
        f"{statistics.median(steady):>10,.0f} results/s"
    )
    print(f"  {'target':<28} {f'>= {TARGET:,}':>10} results/s")
    print(
        f"  {'bare COPY, same rows':<28} {statistics.median(ceiling):>10,.0f} rows/s "
        "(storing alone, no parse, no identities, no analysis: the ceiling of any import)"
    )
    if peaks:
        print(
            f"  {'peak RSS, whole command':<28} {max(peaks):>10,.0f} MB for one run of "
            f"{args.memory_tests:,} tests, storing and analysis (analyze job target "
            f"< {MEMORY_TARGET_MB} MB)"
        )


if __name__ == "__main__":
    main()
