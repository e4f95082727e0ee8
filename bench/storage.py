"""Storage benchmark: bytes on disk per stored result, and what retention gets back.

Imports a sample history (``ingest.sample_history``: ZIP artifacts of two
matrix jobs, realistic names, failure messages) through the production store
(parse, identity mapping, COPY), scores it, runs VACUUM ANALYZE, and reports
each table's heap, indexes and TOAST from ``pg_total_relation_size`` divided by
its rows: bytes per result (the figure that sizes a deployment), per test
identity, per run attempt and per score. Then it removes the older half of
the results with the retention service (``analysis.retention``), prints the
plan of one delete batch, imports as many new runs of the same tests, and
reports how much the results table grew (retention's free space is reused) and
how many heap blocks a run lookup reads through the BRIN index by run
afterwards.
Measures whole tables, so it wants a database with no results in it (``make
bench`` and ``scripts/with-services.sh`` start an empty one). The
repositories are deleted at the end, also when a step fails.

    python -m bench.storage [--runs 250] [--tests 400] [--no-retention]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

NAME = "bench/storage"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=250, help="workflow runs of the history")
    parser.add_argument("--tests", type=int, default=400, help="test cases (two jobs run each)")
    parser.add_argument("--no-retention", action="store_true", help="sizes only")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flakeguard.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench.analysis import _delete_repositories
    from ingest.models import TestResult

    if connection.vendor != "postgresql":
        sys.exit("bench.storage needs PostgreSQL in DATABASE_URL (make bench starts one)")
    call_command("migrate", verbosity=0)
    _delete_repositories((NAME,))
    if TestResult.objects.exists():
        sys.exit("bench.storage measures whole tables: it needs a database with no results stored")
    try:
        with tempfile.TemporaryDirectory(prefix="flakeguard-storage-") as tmp:
            repository, imported, entries = _import(
                Path(tmp) / "history", NAME, args.runs, args.tests
            )
            _score(repository)
            _vacuum()
            sizes = _sizes()
            _print_sizes(sizes, imported)
            if not args.no_retention:
                _retention(repository, entries, sizes)
    finally:
        started = time.perf_counter()
        _delete_repositories((NAME,))
        print(
            f"deleted the benchmark data in {time.perf_counter() - started:.1f}s", file=sys.stderr
        )


def _import(folder: Path, name: str, runs: int, tests: int) -> tuple[Any, int, list]:
    """Generate a history and import it run by run with the production store."""
    from ingest.manifest import read_manifest
    from ingest.models import Repository
    from ingest.sample_history import HistoryConfig, generate_history

    history = generate_history(folder, HistoryConfig(repo=name, runs=runs, tests=tests))
    entries, problems = read_manifest(history.manifest_path)
    assert not problems, problems
    stored = _store(name, entries)
    return Repository.objects.get(full_name=name), stored, entries


def _store(name: str, entries: list) -> int:
    from ingest import store

    started = time.perf_counter()
    stored = sum(store.store_run(run=e.run, files=e.files).results_stored for e in entries)
    seconds = time.perf_counter() - started
    print(
        f"{name}: imported {stored:,} results of {len(entries)} run attempts in {seconds:.1f}s "
        f"({stored / seconds:,.0f} results/s)",
        file=sys.stderr,
    )
    return stored


def _score(repository: Any) -> None:
    from analysis.services import recompute_repository

    started = time.perf_counter()
    recompute_repository(repository=repository)
    print(f"{repository}: scored in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def _vacuum() -> None:
    from django.db import connection

    from analysis.models import TestScore
    from ingest.models import TestCase, TestResult, WorkflowRun

    with connection.cursor() as cursor:
        for model in (TestResult, TestCase, WorkflowRun, TestScore):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")


_TABLES = (
    ("results", "ingest_testresult"),
    ("tests (identities)", "ingest_testcase"),
    ("run attempts", "ingest_workflowrun"),
    ("scores", "analysis_testscore"),
)


def _sizes() -> dict[str, dict[str, int]]:
    """Rows and bytes (heap, indexes, TOAST, total) of each table, and of each results index."""
    from django.db import connection

    sizes: dict[str, dict[str, int]] = {}
    with connection.cursor() as cursor:
        for _, table in _TABLES:
            cursor.execute(
                f"SELECT (SELECT COUNT(*) FROM {table}), pg_relation_size(%s), "
                "pg_indexes_size(%s), pg_table_size(%s) - pg_relation_size(%s), "
                "pg_total_relation_size(%s)",
                [table] * 5,
            )
            rows, heap, indexes, toast, total = cursor.fetchone()
            sizes[table] = {
                "rows": rows, "heap": heap, "indexes": indexes, "toast": toast, "total": total,
            }  # fmt: skip
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = 'ingest_testresult'::regclass ORDER BY 1"
        )
        sizes["result indexes"] = dict(cursor.fetchall())
    return sizes


def _print_sizes(sizes: dict[str, dict[str, int]], results: int) -> None:
    from django.db import connection

    version = connection.cursor().connection.info.server_version
    print()
    print(
        f"Storage on PostgreSQL {version // 10000}.{version % 10000} after VACUUM ANALYZE, "
        f"{results:,} results imported through the store"
    )
    print(
        f"  {'table':<20} {'rows':>9} {'heap':>9} {'indexes':>9} {'toast+fsm':>9} "
        f"{'total':>9} {'bytes/row':>10}"
    )
    for label, table in _TABLES:
        s = sizes[table]
        per_row = s["total"] / s["rows"] if s["rows"] else 0
        print(
            f"  {label:<20} {s['rows']:>9,} {_mb(s['heap']):>9} {_mb(s['indexes']):>9} "
            f"{_mb(s['toast']):>9} {_mb(s['total']):>9} {per_row:>10,.0f}"
        )
    results_table = sizes["ingest_testresult"]
    rows = results_table["rows"]
    print(
        "  results, per row:    "
        + ", ".join(
            f"{index} {size / rows:,.1f} B" for index, size in sizes["result indexes"].items()
        )
        + f", heap {results_table['heap'] / rows:,.1f} B"
    )


def _retention(repository: Any, entries: list, before: dict) -> None:
    """Prune the older half, show one batch's plan, refill the space and look a run up."""
    from dataclasses import replace

    from django.conf import settings

    from analysis.retention import prune_results
    from ingest.models import WorkflowRun

    started_at = sorted(e.run.started_at for e in entries)
    cutoff = started_at[len(started_at) // 2]
    print()
    print("Retention: the older half of the history")
    for line in _explain_one_batch(repository, cutoff, settings.FLAKEGUARD_RETENTION_BATCH_SIZE):
        print(f"  {line}")
    started = time.perf_counter()
    summary = prune_results(
        days=1, now=cutoff + timedelta(days=1), repository=repository, time_budget=float("inf")
    )
    seconds = time.perf_counter() - started
    print(
        f"  removed {summary.results:,} results of {summary.runs} runs in {summary.batches} "
        f"batches (largest {summary.largest_batch:,}) and vacuumed: {seconds:.1f}s, "
        f"{summary.results / seconds:,.0f} results/s"
    )
    # The runs that went, again as new runs of the same tests after the last
    # one: what the space retention frees is reused by.
    span = started_at[-1] - started_at[0] + timedelta(days=1)
    later = [
        replace(
            e, run=replace(e.run, run_id=e.run.run_id + 10**9, started_at=e.run.started_at + span)
        )
        for e in entries
        if e.run.started_at < cutoff
    ]
    refilled = _store(f"{repository} (new runs)", later)
    _vacuum()
    after, was = _sizes()["ingest_testresult"], before["ingest_testresult"]
    print(
        f"  then {refilled:,} new results of the same tests: the results table grew by "
        f"{_mb(after['total'] - was['total'])} (heap {_mb(after['heap'] - was['heap'])}, "
        f"indexes {_mb(after['indexes'] - was['indexes'])}; "
        f"{refilled * was['total'] / was['rows'] / 2**20:,.1f} MB without reuse), "
        f"{after['total'] / after['rows']:,.0f} B per stored result"
    )
    # A run kept from before, and a new one from the middle: the ids a range
    # summary spanning old and new runs would match.
    kept = WorkflowRun.objects.filter(repository=repository, results_pruned_at__isnull=True)
    new = kept.filter(run_id__gt=10**9).order_by("pk")
    for label, run in (
        ("the oldest run kept", kept.order_by("started_at").first()),
        ("a new run", new[new.count() // 2]),
    ):
        blocks, own = _run_lookup_blocks(run.pk)
        print(
            f"  a lookup of {label} through result_run_idx reads {blocks} heap blocks "
            f"for its {run.results_count:,} results on {own} pages"
        )


def _explain_one_batch(repository: Any, cutoff: Any, batch_size: int) -> list[str]:
    """EXPLAIN ANALYZE of retention's first delete statement, rolled back."""
    from django.db import connection, transaction

    from ingest.models import TestResult, WorkflowRun

    group, size = [], 0
    for pk, count in (
        WorkflowRun.objects.filter(repository=repository, started_at__lt=cutoff)
        .order_by("started_at", "pk")
        .values_list("pk", "results_count")
    ):
        if group and size + count > batch_size:
            break
        group.append(pk)
        size += count
    table = TestResult._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) DELETE FROM {table} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {table} WHERE run_id = ANY(%s) LIMIT %s))",
            [group, batch_size],
        )
        plan = [line for (line,) in cursor.fetchall()]
        transaction.set_rollback(True)
    return [f"one batch ({len(group)} runs, {size:,} results):", *plan]


def _run_lookup_blocks(run_pk: int) -> tuple[int, int]:
    """(heap blocks a lookup of the run reads, distinct pages its rows are on)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) "
            "SELECT COUNT(*) FROM ingest_testresult WHERE run_id = %s",
            [run_pk],
        )
        plan = "\n".join(line for (line,) in cursor.fetchall())
        cursor.execute(
            "SELECT COUNT(DISTINCT (ctid::text::point)[0]) FROM ingest_testresult WHERE run_id = %s",
            [run_pk],
        )
        (own,) = cursor.fetchone()
    found = re.search(r"Heap Blocks: (?:exact=(\d+))?\s*(?:lossy=(\d+))?", plan)
    if found is None:
        print(plan, file=sys.stderr)
        return -1, own
    return sum(int(n) for n in found.groups() if n), own


def _mb(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


if __name__ == "__main__":
    main()
