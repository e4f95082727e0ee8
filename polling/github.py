"""The one module that talks to GitHub: PyGithub against ``GITHUB_API_URL``.

A leaf: it imports no FlakeGuard app and takes its configuration as arguments,
so every other module reaches GitHub through ``GitHubClient`` and tests drive
the real PyGithub client against a fake server. Every call has a timeout;
connection errors, read timeouts and 5xx answers are retried with backoff
(urllib3's ``Retry``, idempotent methods only); a short secondary rate limit
(``Retry-After``) is waited out, a longer one or a spent rate limit is raised
as ``RateLimited`` with the time it resets, and every answer's rate-limit
headers are reported to the shared budget.

Authentication is a token, or a GitHub App: a JWT signed with the App's key is
exchanged for an installation token, which PyGithub caches and renews before
its hour runs out.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import requests
from github import Auth, Github, GithubException
from urllib3.util.retry import Retry

from ingest.timestamps import parse_timestamp
from polling import metrics

logger = logging.getLogger(__name__)

PER_PAGE = 100
# Annotations GitHub accepts in one check-run request.
ANNOTATIONS_PER_REQUEST = 50


class GitHubError(Exception):
    """GitHub answered with an error that retrying now will not fix."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(GitHubError):
    """The rate limit is spent (or a secondary limit hit): wait until ``reset_at``."""

    def __init__(self, message: str, *, reset_at: float, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.reset_at = reset_at


class Unavailable(GitHubError):
    """GitHub could not be reached or kept failing (5xx, timeouts): try again later."""


class Gone(GitHubError):
    """The resource expired (410): an artifact past its retention period."""


class TooLarge(GitHubError):
    """The artifact is larger than the download cap."""


class Forbidden(GitHubError):
    """GitHub refuses this write for these credentials (e.g. check runs need an App)."""


class RateBudget(Protocol):
    """Where answers' rate-limit headers go, shared by every worker using the same credentials."""

    def wait_time(self, key: str) -> float: ...

    def record(self, key: str, *, remaining: int, reset_at: float) -> None: ...

    def block(self, key: str, *, until: float) -> None: ...


@dataclass(frozen=True)
class GitHubConfig:
    api_url: str = "https://api.github.com"
    token: str = ""
    app_id: str = ""
    private_key: str = ""
    timeout: float = 15.0
    retries: int = 3
    #: longest Retry-After or rate-limit reset a call may sleep through;
    #: beyond it the call raises RateLimited and the job waits instead
    max_wait_seconds: float = 10.0


@dataclass(frozen=True)
class ArtifactInfo:
    id: int
    name: str
    size_bytes: int
    created_at: datetime | None
    expired: bool


class GitHubClient:
    """What FlakeGuard asks of GitHub, for one set of credentials."""

    def __init__(
        self,
        config: GitHubConfig,
        *,
        installation_id: int | None = None,
        budget: RateBudget | None = None,
    ) -> None:
        self.config = config
        self.budget = budget
        self.auth = _auth(config, installation_id)
        self.budget_key = _budget_key(config, installation_id)
        self.github = Github(
            auth=self.auth,
            base_url=config.api_url,
            timeout=int(max(1, config.timeout)),
            # Connection errors, read timeouts and 5xx, with backoff; only for
            # idempotent methods, so a check-run POST is never sent twice. Rate
            # limits (403/429) are ours to handle: a long Retry-After must not
            # put a worker to sleep for an hour.
            retry=Retry(
                total=config.retries,
                backoff_factor=0.5,
                status_forcelist=(500, 502, 503, 504),
                respect_retry_after_header=False,
            ),
            per_page=PER_PAGE,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )
        self._requester = self.github.requester

    # --- workflow runs ----------------------------------------------------------

    def workflow_runs(
        self,
        repo: str,
        *,
        etag: str = "",
        created_since: datetime | None = None,
        status: str | None = None,
    ) -> tuple[list[dict[str, Any]], str, bool]:
        """Workflow runs, newest first, following pagination; every status unless ``status``.

        Returns (runs, etag of the first page, not_modified). With ``etag`` the
        first page is a conditional request: when nothing changed GitHub answers
        304, which costs no rate limit, and no runs are returned.
        """
        params: dict[str, Any] = {"per_page": PER_PAGE}
        if status:
            params["status"] = status
        if created_since is not None:
            params["created"] = f">={created_since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        headers = {"If-None-Match": etag} if etag else {}
        runs: list[dict[str, Any]] = []
        first_etag = ""
        for page, (response_headers, data) in enumerate(
            self._pages(f"/repos/{repo}/actions/runs", params, headers)
        ):
            if page == 0:
                first_etag = response_headers.get("etag", "")
                if data is None:  # 304 Not Modified
                    return [], etag, True
            runs.extend(data.get("workflow_runs", []))
        return runs, first_etag, False

    def workflow_run(
        self, repo: str, run_id: int, *, etag: str = ""
    ) -> tuple[dict[str, Any] | None, str]:
        """One workflow run and its ETag; (None, etag) when unchanged since ``etag`` (free)."""
        headers = {"If-None-Match": etag} if etag else None
        response_headers, data = self._get(f"/repos/{repo}/actions/runs/{run_id}", None, headers)
        if data is None:
            return None, etag
        return data, response_headers.get("etag", "")

    def file_text(self, repo: str, path: str, *, etag: str = "") -> tuple[str | None, str, bool]:
        """A file of the default branch: (text, etag, exists). Unchanged since ``etag``
        gives (None, etag, True) at no cost to the rate limit; a missing file (None, "", False)."""
        headers = {"If-None-Match": etag} if etag else None
        try:
            response_headers, data = self._get(f"/repos/{repo}/contents/{path}", None, headers)
        except GitHubError as exc:
            if exc.status == 404:
                return None, "", False
            raise
        if data is None:
            return None, etag, True
        if not isinstance(data, dict) or data.get("type") != "file":
            return None, "", False
        text = base64.b64decode(data.get("content", "")).decode("utf-8", errors="replace")
        return text, response_headers.get("etag", ""), True

    def artifact_retention_days(self, repo: str) -> int | None:
        """Days the repository keeps artifacts; None when these credentials may not read it.

        Reading it takes the Actions administration permission, which an App
        installed for checks and Actions alone does not have.
        """
        try:
            _, data = self._get(f"/repos/{repo}/actions/permissions/artifact-and-log-retention")
        except (RateLimited, Unavailable):
            raise
        except GitHubError as exc:
            if exc.status in (403, 404):
                return None
            raise
        days = data.get("days") if isinstance(data, dict) else None
        return days if isinstance(days, int) and days > 0 else None

    def run_attempt(self, repo: str, run_id: int, attempt: int) -> dict[str, Any]:
        _, data = self._get(f"/repos/{repo}/actions/runs/{run_id}/attempts/{attempt}")
        return data

    def run_artifacts(self, repo: str, run_id: int) -> list[ArtifactInfo]:
        """Every artifact of the run, all attempts together (GitHub does not tell them apart)."""
        artifacts = []
        for _, data in self._pages(
            f"/repos/{repo}/actions/runs/{run_id}/artifacts", {"per_page": PER_PAGE}
        ):
            for item in data.get("artifacts", []):
                artifacts.append(
                    ArtifactInfo(
                        id=int(item["id"]),
                        name=str(item.get("name", "")),
                        size_bytes=int(item.get("size_in_bytes") or 0),
                        created_at=parse_timestamp(item.get("created_at")),
                        expired=bool(item.get("expired")),
                    )
                )
        return artifacts

    def download_artifact(self, repo: str, artifact_id: int, dest: Path, *, max_bytes: int) -> int:
        """Stream the artifact's ZIP to ``dest``; returns its size.

        GitHub answers with a redirect to a blob URL that lives about a
        minute, so it is followed at once, without our credentials. Raises
        Gone for an expired artifact and TooLarge past ``max_bytes`` (the
        partial file is removed).
        """
        self._respect_budget()
        url = f"{self.config.api_url}/repos/{repo}/actions/artifacts/{artifact_id}/zip"
        headers = {
            "Authorization": f"{self.auth.token_type} {self.auth.token}",
            "Accept": "application/vnd.github+json",
        }
        answer = self._send(lambda: requests.get(url, headers=headers, allow_redirects=False,
                                                  timeout=self.config.timeout), url)  # fmt: skip
        self._record(answer.headers)
        if answer.status_code == 410:
            raise Gone(f"artifact {artifact_id} has expired", status=410)
        if answer.status_code not in (301, 302, 303, 307, 308):
            self._raise_for(answer.status_code, answer.headers, answer.text)
            raise GitHubError(f"artifact {artifact_id}: unexpected answer {answer.status_code}")
        location = answer.headers["Location"]
        written = 0
        try:
            with (
                self._send(lambda: requests.get(location, stream=True, timeout=self.config.timeout),
                           "/artifact-blob") as blob,
                dest.open("wb") as out,
            ):  # fmt: skip
                if blob.status_code == 410:
                    raise Gone(f"artifact {artifact_id} has expired", status=410)
                if blob.status_code >= 400:
                    raise Unavailable(f"artifact {artifact_id}: blob answered {blob.status_code}")
                declared = int(blob.headers.get("Content-Length") or 0)
                if declared > max_bytes:
                    raise TooLarge(f"artifact {artifact_id} is too large ({declared:,} bytes)")
                try:
                    for chunk in blob.iter_content(chunk_size=1 << 16):
                        written += len(chunk)
                        if written > max_bytes:
                            raise TooLarge(
                                f"artifact {artifact_id} is too large (over {max_bytes:,} bytes)"
                            )
                        out.write(chunk)
                except requests.RequestException as exc:
                    # The connection dropped mid-download: the artifact is fine, try again.
                    raise Unavailable(
                        f"artifact {artifact_id}: download broken off after {written:,} bytes: {exc}"
                    ) from exc
                if declared and written < declared:
                    raise Unavailable(
                        f"artifact {artifact_id}: download ended at {written:,} of {declared:,} bytes"
                    )
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return written

    # --- issues -------------------------------------------------------------------

    def create_issue(self, repo: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /repos/{repo}/issues: title, body, labels."""
        _, data = self._write("POST", f"/repos/{repo}/issues", body)
        return data

    def comment_on_issue(self, repo: str, number: int, text: str) -> dict[str, Any]:
        _, data = self._write("POST", f"/repos/{repo}/issues/{number}/comments", {"body": text})
        return data

    def update_issue(self, repo: str, number: int, body: dict[str, Any]) -> dict[str, Any]:
        """PATCH /repos/{repo}/issues/{number}: e.g. ``{"state": "closed"}``."""
        _, data = self._write("PATCH", f"/repos/{repo}/issues/{number}", body)
        return data

    # --- check runs -------------------------------------------------------------

    def create_check_run(self, repo: str, body: dict[str, Any]) -> dict[str, Any]:
        _, data = self._write("POST", f"/repos/{repo}/check-runs", body)
        return data

    def update_check_run(
        self, repo: str, check_run_id: int, body: dict[str, Any]
    ) -> dict[str, Any]:
        _, data = self._write("PATCH", f"/repos/{repo}/check-runs/{check_run_id}", body)
        return data

    # --- plumbing ---------------------------------------------------------------

    def _pages(
        self, url: str, params: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        """(headers, data) of each page, following the ``Link: rel="next"`` header.

        The query and the conditional headers go with the first request only:
        the next links carry the query, and a 304 (data None) ends the walk.
        """
        next_url: str | None = url
        first = True
        while next_url:
            response_headers, data = self._get(
                next_url, params if first else None, headers if first else None
            )
            yield response_headers, data
            if data is None:
                return
            next_url, first = _next_link(response_headers.get("link", "")), False

    def _get(
        self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[dict[str, Any], Any]:
        return self._call("GET", url, params, headers, None)

    def _write(self, verb: str, url: str, body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        return self._call(verb, url, None, None, body)

    def _call(
        self,
        verb: str,
        url: str,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        body: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], Any]:
        for _ in range(3):
            self._respect_budget()
            try:
                response_headers, data = self._send(
                    lambda: self._requester.requestJsonAndCheck(
                        verb, url, parameters=params, headers=dict(headers or {}), input=body
                    ),
                    url,
                )
            except GithubException as exc:
                self._record(exc.headers or {})
                try:
                    self._raise_for(exc.status, exc.headers or {}, exc.data)
                except RateLimited as limited:
                    # A short secondary limit is waited out here; a long one is the job's.
                    wait = limited.reset_at - time.time()
                    if wait > self.config.max_wait_seconds:
                        raise
                    time.sleep(max(0.0, wait))
                    continue
                raise GitHubError(
                    f"GitHub answered {exc.status} to {verb} {url}", status=exc.status
                ) from exc
            self._record(response_headers)
            return response_headers, data
        raise RateLimited(
            f"GitHub kept answering with rate limits to {verb} {url}", reset_at=time.time() + 60
        )

    def _send(self, call: Callable[[], Any], url: str) -> Any:
        route = metrics.endpoint(url)
        started = time.monotonic()
        status = "unreachable"
        try:
            answer = call()
            status = _status_of(answer)
            return answer
        except GithubException as exc:
            status = str(exc.status)
            raise
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unavailable(f"GitHub unreachable: {exc}") from exc
        except requests.exceptions.RetryError as exc:  # 5xx until the retries ran out
            status = "5xx"
            raise Unavailable(f"GitHub kept failing: {exc}") from exc
        finally:
            metrics.GITHUB_REQUESTS.labels(endpoint=route, status=status).inc()
            metrics.GITHUB_DURATION.labels(endpoint=route).observe(time.monotonic() - started)

    def _raise_for(self, status: int, headers: Any, data: Any) -> None:
        headers = _lowercase(headers)
        message = data.get("message", "") if isinstance(data, dict) else str(data or "")
        if status in (403, 429) and (
            headers.get("x-ratelimit-remaining") == "0"
            or "retry-after" in headers
            or "rate limit" in message.lower()
        ):
            reset_at = _reset_time(headers)
            if self.budget is not None:
                self.budget.block(self.budget_key, until=reset_at)
            raise RateLimited(
                f"GitHub rate limit: {message or status}", reset_at=reset_at, status=status
            )
        if status == 410:
            raise Gone(message or "gone", status=status)
        if status == 403:
            raise Forbidden(message or "forbidden", status=status)
        if 400 <= status < 500:
            raise GitHubError(f"GitHub answered {status}: {message}", status=status)
        if status >= 500:
            raise Unavailable(f"GitHub answered {status}: {message}", status=status)

    def _respect_budget(self) -> None:
        if self.budget is None:
            return
        wait = self.budget.wait_time(self.budget_key)
        if wait <= 0:
            return
        if wait > self.config.max_wait_seconds:
            raise RateLimited(
                f"rate budget of {self.budget_key} spent; resets in {wait:.0f}s",
                reset_at=time.time() + wait,
            )
        time.sleep(wait)

    def _record(self, headers: Any) -> None:
        headers = _lowercase(headers)
        remaining = headers.get("x-ratelimit-remaining")
        reset = headers.get("x-ratelimit-reset")
        if remaining is None or reset is None:
            return
        try:
            left, reset_at = int(remaining), float(reset)
        except ValueError:
            logger.warning("unreadable rate-limit headers: %s / %s", remaining, reset)
            return
        metrics.GITHUB_RATE_LIMIT.labels(installation=self.budget_key).set(left)
        if self.budget is not None:
            self.budget.record(self.budget_key, remaining=left, reset_at=reset_at)


def artifact_matches(name: str, pattern: str) -> bool:
    """Shell-style match of an artifact name, ``*`` taking every artifact."""
    return fnmatch.fnmatchcase(name, pattern or "*")


def verify_webhook_signature(body: bytes, signature: str, secrets: list[str]) -> bool:
    """``X-Hub-Signature-256`` checked in constant time against each configured secret."""
    if not signature.startswith("sha256=") or not secrets:
        return False
    given = signature.removeprefix("sha256=")
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        # no early exit: the time taken does not depend on which secret matched
        matched |= hmac.compare_digest(expected, given)
    return matched


def _auth(config: GitHubConfig, installation_id: int | None) -> Auth.Auth:
    if config.app_id and config.private_key:
        app = Auth.AppAuth(config.app_id, config.private_key)
        if installation_id is None:
            raise GitHubError("a GitHub App needs the repository's installation id")
        return Auth.AppInstallationAuth(app, int(installation_id))
    if config.token:
        return Auth.Token(config.token)
    raise GitHubError(
        "no GitHub credentials: set GITHUB_TOKEN, or GITHUB_APP_ID with "
        "GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH"
    )


def _budget_key(config: GitHubConfig, installation_id: int | None) -> str:
    if config.app_id and config.private_key:
        return f"app:{config.app_id}:installation:{installation_id}"
    digest = hashlib.sha256(config.token.encode()).hexdigest()[:16]
    return f"token:{digest}"


def _next_link(link_header: str) -> str | None:
    for part in link_header.split(","):
        section = part.split(";")
        if len(section) < 2:
            continue
        if any(s.strip() == 'rel="next"' for s in section[1:]):
            return section[0].strip().strip("<>")
    return None


def _reset_time(headers: dict[str, Any]) -> float:
    now = time.time()
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return now + float(retry_after)
        except ValueError:
            pass
    reset = headers.get("x-ratelimit-reset")
    if reset is not None:
        try:
            return max(now + 1, float(reset))
        except ValueError:
            pass
    return now + 60


def _status_of(answer: Any) -> str:
    """A requests answer's status; PyGithub's (headers, data) is 2xx, or 304 when data is None."""
    if isinstance(answer, requests.Response):
        return str(answer.status_code)
    return "304" if isinstance(answer, tuple) and answer[1] is None else "2xx"


def _lowercase(headers: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in dict(headers or {}).items()}


def iter_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
