"""API tokens: made once, stored as a hash, checked on every request, revoked at will."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from ingest.models import ApiToken, Repository, TokenScope

PREFIX = "fg_"
# last_used_at is written at most this often, not on every request.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    *, repository: Repository, scope: str, name: str = "", user: object | None = None
) -> tuple[ApiToken, str]:
    """A new token and its secret, which is not kept and cannot be shown again."""
    if scope not in TokenScope.values:
        raise ValueError(f"unknown scope {scope!r}; choose one of {', '.join(TokenScope.values)}")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name,
        repository=repository,
        scope=scope,
        user=user,
        key_hash=hash_token(secret),
        prefix=secret[: len(PREFIX) + 6],
    )
    return token, secret


def verify_token(secret: str) -> ApiToken | None:
    """The live token with this secret, or None; notes when it was last used."""
    token = (
        ApiToken.objects.select_related("repository", "user")
        .filter(key_hash=hash_token(secret), revoked_at__isnull=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
