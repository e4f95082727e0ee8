"""Dashboard and API response times on a repository with 10 million results.

Writes a synthetic history (``--tests`` x ``--runs`` results, through the same
SQL as ``bench.analysis``), scores it, then requests as a signed-in viewer,
``--requests`` times each: the repository page (pages 1 and 3, a search, a
filter), a flaky test's page, and ``/api/v1/tests/``, through Django's request
handling (no network). Prints the median and p95 of each next to the 100 ms
goal. Needs PostgreSQL in DATABASE_URL (``make bench`` starts one).

    python -m bench.pages [--tests 40000] [--runs 250] [--requests 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

GOAL_MS = 100
NAME = "bench/pages"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=250)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flakeguard.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from analysis.models import TestScore
    from analysis.services import recompute_repository
    from bench.analysis import _delete_repositories, _synthesize
    from ingest.access import grant

    if connection.vendor != "postgresql":
        sys.exit("bench.pages needs PostgreSQL in DATABASE_URL (make bench starts one)")
    call_command("migrate", verbosity=0)
    _delete_repositories((NAME,))
    try:
        history = _synthesize(NAME, tests=args.tests, runs=args.runs, seed=0.23)
        started = time.perf_counter()
        recompute_repository(repository=history.repository)
        print(f"{NAME}: scored in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        user = User.objects.create_user(f"bench-{os.getpid()}", password="x")
        grant(user=user, repository=history.repository, role="viewer")
        client = Client()
        client.force_login(user)
        flaky = (
            TestScore.objects.filter(repository=history.repository, verdict="flaky")
            .order_by("-failures")
            .values_list("test_id", flat=True)
            .first()
        )
        base = f"/repos/{NAME}/"
        pages = {
            "repository page": base,
            "repository page 3": f"{base}?page=3",
            "repository search": f"{base}?q=test_1234",
            "repository, flaky only": f"{base}?status=flaky&sort=failures",
            "test page": f"{base}tests/{flaky}/",
            "/api/v1/tests/": f"/api/v1/tests/?repo={NAME}",
            "/api/v1/tests/?status=flaky": f"/api/v1/tests/?repo={NAME}&status=flaky",
        }
        timings: dict[str, list[float]] = {}
        for label, url in pages.items():
            client.get(url)  # warm: the first request of a process compiles templates
            for _ in range(args.requests):
                started = time.perf_counter()
                response = client.get(url)
                timings.setdefault(label, []).append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (url, response.status_code)
    finally:
        started = time.perf_counter()
        _delete_repositories((NAME,))
        User.objects.filter(username=f"bench-{os.getpid()}").delete()
        print(
            f"deleted the benchmark data in {time.perf_counter() - started:.1f}s", file=sys.stderr
        )
    print()
    print(
        f"Pages and API on {history.results:,} results ({args.tests:,} tests x {args.runs} runs), "
        f"{args.requests} requests each"
    )
    for label, values in timings.items():
        p95 = statistics.quantiles(values, n=20)[-1]
        print(
            f"  {label:<28} median {statistics.median(values):>7.1f} ms  p95 {p95:>7.1f} ms  "
            f"(goal p95 < {GOAL_MS} ms)"
        )


if __name__ == "__main__":
    main()
