"""The quarantine list as CI reads it: 10,000 quarantined tests, one request with a token.

Creates a repository with ``--tests`` quarantined tests, then times
``GET /api/v1/quarantine/?repo=…&page_size=10000`` through Django's request
handling (authentication, the query, JSON rendering; no network), ``--rounds``
times, and prints the median next to the 50 ms target, and the first request,
which builds the page the others are served from. Needs PostgreSQL in
DATABASE_URL (``make bench`` starts one).

    python -m bench.quarantine [--tests 10000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

TARGET_MS = 50


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flakeguard.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from analysis.models import Quarantine
    from ingest.identity import test_identity
    from ingest.models import Repository, TestCase
    from ingest.tokens import create_token

    if connection.vendor != "postgresql":
        sys.exit("bench.quarantine needs PostgreSQL in DATABASE_URL (make bench starts one)")
    call_command("migrate", verbosity=0)
    name = f"bench/quarantine-{os.getpid()}"
    repository = Repository.objects.create(full_name=name)
    try:
        tests = TestCase.objects.bulk_create(
            TestCase(
                repository=repository,
                identity=test_identity("tests.test_mod", "", f"test_{n}")[0],
                classname="tests.test_mod",
                name=f"test_{n}",
            )
            for n in range(args.tests)
        )
        expires = timezone.now() + timezone.timedelta(days=30)
        Quarantine.objects.bulk_create(
            Quarantine(test=test, repository=repository, reason="flaky", owner="team",
                       expires_at=expires)
            for test in tests
        )  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE analysis_quarantine")
        _, secret = create_token(repository=repository, scope="upload")
        client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
        url = f"/api/v1/quarantine/?repo={name}&page_size=10000"
        timings = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200 and len(response.json()["results"]) == args.tests
        cached = client.get(url, HTTP_IF_NONE_MATCH=response["ETag"])
        assert cached.status_code == 304
    finally:
        repository.delete()
    print()
    print(f"Quarantine list, {args.tests:,} quarantined tests, one page (median of {args.rounds})")
    print(
        f"  {'GET with a token':<20} {statistics.median(timings):>7.1f} ms  "
        f"(min {min(timings):.1f}, max {max(timings):.1f}); target < {TARGET_MS} ms"
    )
    print(
        f"  {'first after a change':<20} {timings[0]:>7.1f} ms  (the page is built once per "
        "version of the list, then served from the cache)"
    )


if __name__ == "__main__":
    main()
