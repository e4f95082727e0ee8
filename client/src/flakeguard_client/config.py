"""Settings and run metadata: flags first, then FLAKEGUARD_* variables, then the CI's own."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from flakeguard_client import ci

DEFAULT_TIMEOUT = 10.0


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which flag or variable to set."""


@dataclass(frozen=True)
class ServerSettings:
    url: str
    token: str
    timeout: float


@dataclass(frozen=True)
class RunMetadata:
    repo: str
    run_id: int
    run_attempt: int
    sha: str
    branch: str
    event: str
    started_at: str
    workflow: str
    job: str

    def form_fields(self) -> list[tuple[str, str]]:
        fields = [
            ("repo", self.repo),
            ("run_id", str(self.run_id)),
            ("run_attempt", str(self.run_attempt)),
            ("sha", self.sha),
            ("branch", self.branch),
            ("event", self.event),
            ("started_at", self.started_at),
        ]
        fields += [(k, v) for k, v in (("workflow", self.workflow), ("job", self.job)) if v]
        return fields


def _pick(*values: str | None) -> str | None:
    for value in values:
        if value is not None and value.strip():
            return value.strip()
    return None


def server_settings(
    env: Mapping[str, str],
    *,
    url: str | None = None,
    token: str | None = None,
    timeout: str | float | None = None,
) -> ServerSettings:
    """Where the server is and how to authenticate, from flags or the environment."""
    base = _pick(url, env.get("FLAKEGUARD_URL"))
    if base is None:
        raise ConfigError("no server URL: pass --url or set FLAKEGUARD_URL")
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the server URL must start with http:// or https://, not {base!r}")
    secret = _pick(token, env.get("FLAKEGUARD_TOKEN"))
    if secret is None:
        raise ConfigError("no API token: pass --token or set FLAKEGUARD_TOKEN")
    return ServerSettings(url=base.rstrip("/"), token=secret, timeout=parse_timeout(timeout, env))


def parse_timeout(value: str | float | None, env: Mapping[str, str]) -> float:
    raw = value if value is not None else _pick(env.get("FLAKEGUARD_TIMEOUT"))
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(
            f"the timeout must be a positive number of seconds (--timeout or FLAKEGUARD_TIMEOUT), not {raw!r}"
        )
    return seconds


_REPO = re.compile(r"^[^/\s]+(/[^/\s]+)+$")


def repository(
    env: Mapping[str, str], flag: str | None = None, detected: ci.Detected | None = None
) -> str:
    """OWNER/NAME of the repository, from --repo, FLAKEGUARD_REPO or the CI."""
    detected = detected if detected is not None else ci.detect(env)
    repo = _pick(flag, env.get("FLAKEGUARD_REPO"), detected.repo)
    if repo is None:
        raise ConfigError("no repository: pass --repo OWNER/NAME or set FLAKEGUARD_REPO")
    if not _REPO.match(repo):
        raise ConfigError(f"the repository must look like OWNER/NAME, not {repo!r}")
    return repo


def run_metadata(
    flags: Mapping[str, str | None], env: Mapping[str, str], *, started_at: datetime
) -> RunMetadata:
    """The run attempt an upload belongs to.

    ``flags`` holds the command line's --repo, --run-id, --run-attempt, --sha,
    --branch, --event, --workflow, --job and --started-at (None when not given);
    ``started_at`` is the default start time (timezone-aware).
    """
    detected = ci.detect(env)
    where = f" (not found in the {detected.provider} environment)" if detected.provider else ""

    repo = repository(env, flags.get("repo"), detected)
    run_id = _pick(flags.get("run_id"), detected.run_id)
    if run_id is None:
        raise ConfigError(f"no run id: pass --run-id{where}")
    sha = _pick(flags.get("sha"), detected.sha)
    if sha is None:
        raise ConfigError(f"no commit: pass --sha{where}")
    attempt = _pick(flags.get("run_attempt"), detected.run_attempt) or "1"
    started = _pick(flags.get("started_at"))
    return RunMetadata(
        repo=repo,
        run_id=_positive_int(run_id, "run id", "--run-id"),
        run_attempt=_positive_int(attempt, "run attempt", "--run-attempt"),
        sha=sha,
        branch=_pick(flags.get("branch"), detected.branch) or "",
        event=_pick(flags.get("event"), detected.event) or "push",
        started_at=_timestamp(started) if started else started_at.isoformat(timespec="seconds"),
        workflow=_pick(flags.get("workflow"), detected.workflow) or "",
        job=_pick(flags.get("job"), detected.job) or "",
    )


def _positive_int(value: str, what: str, flag: str) -> int:
    if not re.fullmatch(r"[0-9]+", value) or int(value) < 1:
        raise ConfigError(f"the {what} must be a positive integer ({flag}), not {value!r}")
    return int(value)


def _timestamp(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ConfigError(
            f"--started-at must be an ISO 8601 time with a timezone, such as "
            f"2026-09-01T12:00:00Z, not {value!r}"
        )
    return parsed.isoformat()
