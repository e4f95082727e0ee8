"""``Authorization: Bearer <token>`` for the API, with failed attempts rate-limited per client.

A client that presents wrong tokens is refused with 429 and ``Retry-After``
once it has failed ``FLAKEGUARD_AUTH_FAILURES_PER_MINUTE`` times in a minute,
before its next token is even looked up, so tokens cannot be guessed at speed.
The count lives in Django's cache (Redis in production, so every web pod shares it).
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from ingest.access import TokenPrincipal
from ingest.models import ApiToken
from ingest.tokens import verify_token

_WINDOW = 60  # seconds


def client_address(request: Request) -> str:
    """The client's address: REMOTE_ADDR, or behind ``FLAKEGUARD_NUM_PROXIES`` proxies the
    address the outermost of them saw (X-Forwarded-For), as DRF's throttles tell clients apart."""
    return BaseThrottle().get_ident(request) or "unknown"


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[object, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("malformed Authorization header")
        key = f"flakeguard:auth-failures:{client_address(request)}:{int(time.time() // _WINDOW)}"
        limit = settings.FLAKEGUARD_AUTH_FAILURES_PER_MINUTE
        if (cache.get(key) or 0) >= limit:
            raise exceptions.Throttled(
                wait=_WINDOW - time.time() % _WINDOW, detail="too many failed authentications"
            )
        try:
            secret = header[1].decode()
        except UnicodeDecodeError:
            secret = ""
        token = verify_token(secret) if secret else None
        if token is None or (token.user is not None and not token.user.is_active):
            if cache.add(key, 1, _WINDOW) is False:
                cache.incr(key)
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        user = token.user if token.user is not None else TokenPrincipal(token)
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword  # makes failures 401 with WWW-Authenticate, not 403


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema names this authentication."""

    target_class = BearerTokenAuthentication
    name = "bearer"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `manage.py create_token`, limited to a repository and scope.",
        }
