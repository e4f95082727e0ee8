"""Reads FlakeGuard's configuration from the environment, in one place.

Every setting the project takes from outside goes through these helpers, which
parse with django-environ so that names, defaults and parsing rules live
together. Two rules are stricter than django-environ's own: a variable set but
empty counts as unset (``FOO= command``), and a value that does not parse
(``DEBUG=ture``) stops the start with an error naming the variable instead of
quietly meaning ``False``.
"""

from __future__ import annotations

import os
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

_env = environ.Env()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    raw = os.environ.get(name)
    return raw if raw is not None and raw.strip() else None


def env_str(name: str, default: str = "") -> str:
    """The variable's value; set but empty counts as unset."""
    return _env.str(name) if _raw(name) is not None else default


def env_bool(name: str, default: bool = False) -> bool:
    raw = _raw(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value not in _TRUE | _FALSE:
        raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")
    return _env.bool(name)


def env_int(name: str, default: int) -> int:
    if _raw(name) is None:
        return default
    try:
        return _env.int(name)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {os.environ[name]!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    if name not in os.environ:
        return list(default)
    return [item.strip() for item in _env.list(name, default=[]) if item.strip()]


def env_db(name: str, default: str) -> dict[str, Any]:
    """A database URL as Django's DATABASES entry (postgres://…, sqlite:///…)."""
    url = env_str(name, default)
    try:
        return _env.db_url_config(url)
    except Exception as exc:
        raise ImproperlyConfigured(f"{name} is not a database URL: {exc}") from None
