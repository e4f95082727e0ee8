"""Shared fixtures: the database must be real PostgreSQL, the broker real Redis.

``make test`` starts throwaway servers and exports DATABASE_URL and REDIS_URL;
tests that touch the database refuse to run on anything else, because COPY,
ON CONFLICT and SKIP LOCKED are what they are about.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _require_postgresql(request: pytest.FixtureRequest) -> None:
    if "django_db_setup" not in request.fixturenames:
        return
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail(
            "database tests need PostgreSQL: run them through `make test`, "
            "which starts throwaway PostgreSQL and Redis servers"
        )


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.fail("this test needs Redis: run it through `make test`")
    return url


FAKE_GITHUB_TOKEN = "ghp_fake_github_token"


@pytest.fixture
def fake_github(settings):
    """A fake GitHub server, with FlakeGuard's settings pointing at it through a token."""
    from polling.clients import forget_clients
    from tests.github_fake import FakeGitHub

    with FakeGitHub() as fake:
        fake.add_token(FAKE_GITHUB_TOKEN)
        settings.GITHUB_API_URL = fake.api_url
        settings.GITHUB_TOKEN = FAKE_GITHUB_TOKEN
        settings.GITHUB_APP_ID = ""
        settings.GITHUB_RETRIES = 1
        settings.GITHUB_TIMEOUT_SECONDS = 5
        settings.REDIS_URL = ""  # the rate budget lives in the process for these tests
        forget_clients()
        yield fake
        forget_clients()


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Rate-limit counts live in the cache (Redis in the suite): each test starts from none."""
    from django.conf import settings
    from django.core.cache import cache

    prefix = settings.CACHES["default"].get("KEY_PREFIX")
    if not prefix:
        cache.clear()
        return
    # The broker shares the Redis database: only the cache's own keys go.
    client = cache._cache.get_client(write=True)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)
