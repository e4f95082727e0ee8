"""The context every log line carries: the correlation id of the work in hand.

A webhook delivery, an upload request or a CLI command starts a correlation;
every job it queues stores the id (``Job.correlation_id``) and binds it again
when a worker runs it, so one id leads from the cause to the check run at the
end. The values live in structlog's context variables, which the log
formatter (``flakeguard.logs``) adds to every line.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars
from structlog.contextvars import get_contextvars as _get

# What a caller may pass as its own id (X-Request-ID): short and printable, so
# nothing a client sends can forge log fields or lines.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def correlation_id() -> str:
    """The id bound to the current context, or '' outside any request, job or command."""
    return str(_get().get("correlation_id", ""))


def safe_id(value: str | None) -> str | None:
    return value if value and _SAFE_ID.match(value) else None


def bind(**values: Any) -> None:
    bind_contextvars(**values)


def clear() -> None:
    clear_contextvars()


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Bind ``values`` for the block and restore what was bound before."""
    with bound_contextvars(**values):
        yield
