"""End-to-end import benchmark: results/s from ZIPs on disk to committed rows.

Generates a sample history (ZIP artifacts on disk), imports it run by run with
the production store (parse, identity mapping, COPY, one transaction per run),
then writes the very same rows again with a bare binary COPY into the same
indexed table, and finally imports the history again split across several
worker processes, as runs-ingest workers do. Prints the rates and their
ratios to the raw COPY. Medians of several rounds, each from empty tables.
Needs PostgreSQL in DATABASE_URL (``make bench`` starts a throwaway one).

    python -m bench.ingest [--runs 120] [--tests 2500] [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=120)
    parser.add_argument("--tests", type=int, default=2500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes for the parallel import (as runs-ingest runs)",
    )
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flakeguard.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from ingest import bulk, store
    from ingest.manifest import read_manifest
    from ingest.models import TestResult
    from ingest.sample_history import HistoryConfig, generate_history

    if connection.vendor != "postgresql":
        sys.exit("bench.ingest needs PostgreSQL in DATABASE_URL (make bench starts one)")
    call_command("migrate", verbosity=0)

    with tempfile.TemporaryDirectory(prefix="flakeguard-bench-") as tmp:
        config = HistoryConfig(
            repo="bench/history", runs=args.runs, tests=args.tests, zip_artifacts=True
        )
        started = time.perf_counter()
        history = generate_history(Path(tmp), config)
        zip_bytes = sum(p.stat().st_size for p in Path(tmp).rglob("*.zip"))
        print(
            f"generated {history.attempts} run attempts, {history.files} ZIP artifacts "
            f"({zip_bytes / 1e6:.1f} MB), {history.results:,} results in {time.perf_counter() - started:.1f}s",
            file=sys.stderr,
        )
        entries, problems = read_manifest(history.manifest_path)
        assert not problems, problems

        e2e_rates: list[float] = []
        parallel_rates: list[float] = []
        copy_rates: list[float] = []
        for round_no in range(1, args.rounds + 1):
            _truncate(connection)
            store._PROCESS_IDENTITIES.clear()
            t0 = time.perf_counter()
            stored = 0
            for entry in entries:
                stored += store.store_run(run=entry.run, files=entry.files).results_stored
            e2e = time.perf_counter() - t0

            # The same rows, grouped by run as the import wrote them.
            columns = ", ".join(bulk.RESULT_COLUMNS)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT {columns} FROM {TestResult._meta.db_table} ORDER BY run_id, position"
                )
                rows = cursor.fetchall()
                cursor.execute(f"TRUNCATE {TestResult._meta.db_table}")
            by_run: dict[int, list[tuple]] = {}
            for row in rows:
                by_run.setdefault(row[0], []).append(row)
            t0 = time.perf_counter()
            for run_rows in by_run.values():
                with transaction.atomic():
                    bulk.write_results(run_rows)
            raw = time.perf_counter() - t0
            assert stored == len(rows) == history.results, (stored, len(rows), history.results)
            e2e_rates.append(stored / e2e)
            copy_rates.append(len(rows) / raw)

            # The production deployment imports runs in several worker
            # processes at once; measure that too, from empty tables again.
            _truncate(connection)
            parallel_stored, parallel = _import_in_processes(entries, args.workers)
            assert parallel_stored == history.results, (parallel_stored, history.results)
            parallel_rates.append(parallel_stored / parallel)
            print(
                f"round {round_no}: end-to-end {stored / e2e:,.0f} results/s in one process, "
                f"{parallel_stored / parallel:,.0f} in {args.workers}; raw COPY {len(rows) / raw:,.0f} rows/s",
                file=sys.stderr,
            )
        _truncate(connection)

    e2e_rate = statistics.median(e2e_rates)
    parallel_rate = statistics.median(parallel_rates)
    copy_rate = statistics.median(copy_rates)
    print()
    print(
        f"End-to-end import (ZIP on disk -> committed rows, PostgreSQL, {history.results:,} results, "
        f"median of {args.rounds})"
    )
    print(
        f"  {'import, 1 process':<30} {e2e_rate:>10,.0f} results/s  ratio to raw COPY {e2e_rate / copy_rate:.2f}"
    )
    print(
        f"  {f'import, {args.workers} processes':<30} {parallel_rate:>10,.0f} results/s  "
        f"ratio to raw COPY {parallel_rate / copy_rate:.2f}"
    )
    print(f"  {'raw binary COPY, same rows':<30} {copy_rate:>10,.0f} rows/s (1 connection)")
    print(f"  {'target':<30} {'>= 150,000 results/s':>10}")


def _import_shard(shard: list) -> int:
    from ingest import store

    return sum(store.store_run(run=e.run, files=e.files).results_stored for e in shard)


def _import_in_processes(entries: list, workers: int) -> tuple[int, float]:
    import multiprocessing

    from django.db import connections

    from ingest import store

    store._PROCESS_IDENTITIES.clear()
    connections.close_all()  # children must open their own connections
    shards = [entries[i::workers] for i in range(workers)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        stored = sum(pool.map(_import_shard, shards))
    return stored, time.perf_counter() - started


def _truncate(connection) -> None:
    from ingest.models import Repository, TestCase, TestResult, WorkflowRun

    tables = [m._meta.db_table for m in (TestResult, TestCase, WorkflowRun, Repository)]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


if __name__ == "__main__":
    main()
