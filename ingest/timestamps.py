"""The one parser of timestamps that come from outside: manifests, CLI flags, GitHub, stored JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_timestamp(
    value: Any, *, field: str = "time", required: bool = False, naive_as_utc: bool = False
) -> datetime | None:
    """An ISO-8601 time with its zone ("2026-09-01T12:00:00Z", "…+02:00"); None when empty.

    A time without a zone is refused rather than guessed (CI systems disagree
    on what a bare local time means), unless ``naive_as_utc`` says that a
    person typed a date ("2026-09-01" as its start in UTC). ``field`` names
    the value in errors.
    """
    if value is None or value == "":
        if required:
            raise ValueError(f"{field} is required (ISO-8601 time)")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} must be an ISO-8601 string, not {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field} is not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None and naive_as_utc:
        return parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is None:
        raise ValueError(f"{field} must include a time zone: {value!r}")
    return parsed
