"""GitHub clients configured from the settings, one per set of credentials and process."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from django.conf import settings

from polling.budget import LocalRateBudget, RedisRateBudget
from polling.github import GitHubClient, GitHubConfig, GitHubError


def github_config() -> GitHubConfig:
    private_key = settings.GITHUB_APP_PRIVATE_KEY
    if not private_key and settings.GITHUB_APP_PRIVATE_KEY_PATH:
        try:
            private_key = Path(settings.GITHUB_APP_PRIVATE_KEY_PATH).read_text()
        except OSError as exc:
            raise GitHubError(
                f"cannot read GITHUB_APP_PRIVATE_KEY_PATH {settings.GITHUB_APP_PRIVATE_KEY_PATH}: "
                f"{exc.strerror or exc}"
            ) from exc
    return GitHubConfig(
        api_url=settings.GITHUB_API_URL,
        token=settings.GITHUB_TOKEN,
        app_id=settings.GITHUB_APP_ID,
        private_key=private_key,
        timeout=settings.GITHUB_TIMEOUT_SECONDS,
        retries=settings.GITHUB_RETRIES,
    )


def github_configured() -> bool:
    """Credentials are set: a token, or an App id with its private key."""
    app_key = settings.GITHUB_APP_PRIVATE_KEY or settings.GITHUB_APP_PRIVATE_KEY_PATH
    return bool(settings.GITHUB_TOKEN or (settings.GITHUB_APP_ID and app_key))


def client_for(*, installation_id: int | None) -> GitHubClient:
    """A client with the configured credentials (as this App installation) and the shared budget."""
    config = github_config()
    key = (config, installation_id if config.app_id else None)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = GitHubClient(
            config, installation_id=installation_id, budget=_budget()
        )
    return client


@cache
def _budget() -> RedisRateBudget | LocalRateBudget:
    if settings.REDIS_URL:
        return RedisRateBudget(settings.REDIS_URL)
    return LocalRateBudget()


# One client per credentials and process: an App installation's token is cached
# inside it and renewed before it runs out, instead of fetched for every job.
_clients: dict[tuple[GitHubConfig, int | None], GitHubClient] = {}


def forget_clients() -> None:
    """Drop cached clients and budget (settings changed, e.g. in tests)."""
    _clients.clear()
    _budget.cache_clear()
