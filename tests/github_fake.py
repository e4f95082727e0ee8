"""A fake GitHub REST server for tests, following the documented shapes of the endpoints FlakeGuard uses.

It serves, under ``/api/v3`` like GitHub Enterprise Server (so PyGithub can be
pointed at it through ``GITHUB_API_URL``):

- ``GET /repos/{owner}/{repo}/actions/runs`` (``status``, ``created``, ``per_page``,
  ``page``), newest first, with ``Link`` pagination and an ``ETag``; a matching
  ``If-None-Match`` gets ``304 Not Modified``, which costs no rate limit;
- ``GET …/actions/runs/{id}`` (with an ``ETag``; a matching ``If-None-Match`` gets
  ``304``), ``GET …/actions/runs/{id}/attempts/{n}`` and ``…/actions/runs/{id}/artifacts``;
- ``GET …/actions/permissions/artifact-and-log-retention`` (``{"days": …}``, or ``403``
  for a credential without administration access when ``retention_days`` is None);
- ``GET …/actions/artifacts/{id}/zip``: ``302`` to a short-lived blob URL on
  another host name (``localhost``), or ``410`` once the artifact expired;
- ``POST …/check-runs``, ``PATCH …/check-runs/{id}``,
  ``GET …/commits/{sha}/check-runs``;
- ``POST /app/installations/{id}/access_tokens`` for a JWT signed with the
  App's key (verified), returning a token with its ``expires_at``;
- ``X-RateLimit-Limit/Remaining/Reset`` on every answer, per credential; a
  spent budget answers ``403 API rate limit exceeded`` until the reset.

Tests add runs and artifacts, queue failures (``fail_next``), slow answers
(``delay_next``), and read every request back from ``requests``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import secrets
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

import jwt

PREFIX = "/api/v3"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class FakeRepo:
    full_name: str
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # run id -> latest attempt
    attempts: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # run id -> list
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    # What the repository's Actions settings say; None answers 403, as GitHub
    # does to a credential without the administration permission.
    retention_days: int | None = 90
    files: dict[str, str] = field(default_factory=dict)  # path -> text, for the contents API
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # number -> issue


class FakeGitHub:
    """Start with ``with FakeGitHub() as github:``; ``github.api_url`` is the base URL."""

    def __init__(
        self, *, rate_limit: int = 5000, app_id: str = "", app_public_key: str = ""
    ) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[Request] = []
        self.rate_limit = rate_limit
        self.remaining: dict[str, int] = {}
        self.reset_at = int(time.time()) + 3600
        self.tokens: set[str] = set()
        self.installation_tokens: dict[str, tuple[int, datetime]] = {}
        self.app_id, self.app_public_key = app_id, app_public_key
        self.token_lifetime = timedelta(hours=1)
        self.blobs: dict[str, tuple[bytes, float]] = {}
        # (path regex, status, times, headers)
        self.failures: list[tuple[str, int, int, dict[str, str]]] = []
        self.delays: list[tuple[str, float, int]] = []
        # (path regex, times): answers cut off half way, the connection then closed
        self.truncations: list[tuple[str, int]] = []
        self.blob_lifetime = 60.0
        self.lock = threading.Lock()
        self._next_id = 5_000_000_000
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.api_url = f"http://127.0.0.1:{self.port}{PREFIX}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- set-up ---------------------------------------------------------------

    def add_token(self, token: str) -> None:
        self.tokens.add(token)

    def repo(self, full_name: str) -> FakeRepo:
        return self.repos.setdefault(full_name, FakeRepo(full_name))

    def new_id(self) -> int:
        with self.lock:
            self._next_id += 1
            return self._next_id

    def add_run(
        self,
        full_name: str,
        *,
        run_id: int | None = None,
        attempt: int = 1,
        sha: str | None = None,
        branch: str = "main",
        event: str = "push",
        started_at: datetime | None = None,
        status: str = "completed",
        conclusion: str = "success",
        name: str = "ci",
    ) -> dict[str, Any]:
        """Add a run (or a new attempt of one: same ``run_id``, higher ``attempt``)."""
        repo = self.repo(full_name)
        run_id = run_id or self.new_id()
        started = started_at or datetime.now(UTC)
        previous = repo.runs.get(run_id)
        run = {
            "id": run_id,
            "name": name,
            "head_branch": branch,
            "head_sha": sha or (previous["head_sha"] if previous else secrets.token_hex(20)),
            "event": event,
            "status": status,
            "conclusion": conclusion if status == "completed" else None,
            "run_attempt": attempt,
            "run_number": len(repo.runs) + 1,
            "created_at": _iso((previous and _parse(previous["created_at"])) or started),
            "run_started_at": _iso(started),
            "updated_at": _iso(started + timedelta(minutes=5)),
            "html_url": f"https://github.com/{full_name}/actions/runs/{run_id}",
            "repository": {"full_name": full_name},
        }
        repo.runs[run_id] = run
        repo.attempts[(run_id, attempt)] = dict(run)
        return run

    def add_artifact(
        self,
        full_name: str,
        run_id: int,
        name: str,
        content: bytes,
        *,
        created_at: datetime | None = None,
        expired: bool = False,
    ) -> dict[str, Any]:
        artifact_id = self.new_id()
        artifact = {
            "id": artifact_id,
            "name": name,
            "size_in_bytes": len(content),
            "expired": expired,
            "created_at": _iso(created_at or datetime.now(UTC)),
            "archive_download_url": f"{self.api_url}/repos/{full_name}/actions/artifacts/{artifact_id}/zip",
            "workflow_run": {"id": run_id},
            "_content": content,
        }
        self.repo(full_name).artifacts.setdefault(run_id, []).append(artifact)
        return artifact

    def fail_next(
        self, path_pattern: str, status: int, times: int = 1, headers: dict[str, str] | None = None
    ) -> None:
        """The next ``times`` requests whose path matches get ``status`` (e.g. 502, or 429
        with ``{"Retry-After": "1"}`` for a secondary rate limit)."""
        self.failures.append((path_pattern, status, times, headers or {}))

    def delay_next(self, path_pattern: str, seconds: float, times: int = 1) -> None:
        self.delays.append((path_pattern, seconds, times))

    def truncate_next(self, path_pattern: str, times: int = 1) -> None:
        """The next ``times`` answers whose path matches stop half way through their
        declared ``Content-Length`` and the connection closes (a dropped download)."""
        with self.lock:
            self.truncations.append((path_pattern, times))

    def take_truncation(self, path: str) -> bool:
        with self.lock:
            for i, (pattern, times) in enumerate(self.truncations):
                if re.search(pattern, path):
                    if times - 1 <= 0:
                        self.truncations.pop(i)
                    else:
                        self.truncations[i] = (pattern, times - 1)
                    return True
        return False

    def spend_rate_limit(self, credential: str, *, reset_in: float) -> None:
        self.remaining[credential] = 0
        self.reset_at = int(time.time() + reset_in)

    def requests_to(self, pattern: str, method: str = "GET") -> list[Request]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    # --- the server's side ------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        url = urlparse(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = (
            json.loads(raw)
            if raw and "json" in handler.headers.get("Content-Type", "json")
            else raw
        )
        request = Request(
            handler.command,
            url.path,
            dict(parse_qsl(url.query)),
            dict(handler.headers.items()),
            body,
        )
        with self.lock:
            self.requests.append(request)
        for i, (pattern, seconds, times) in enumerate(self.delays):
            if re.search(pattern, url.path):
                self.delays[i] = (pattern, seconds, times - 1)
                if times - 1 <= 0:
                    self.delays.pop(i)
                time.sleep(seconds)
                break
        for i, (pattern, status, times, headers) in enumerate(self.failures):
            if re.search(pattern, url.path):
                if times - 1 <= 0:
                    self.failures.pop(i)
                else:
                    self.failures[i] = (pattern, status, times - 1, headers)
                request.status = status
                message = (
                    "You have exceeded a secondary rate limit"
                    if status in (403, 429) and headers
                    else "Server Error"
                )
                return status, dict(headers), json.dumps({"message": message}).encode()
        if url.path.startswith("/blobs/"):
            status, headers, payload = self._blob(url.path)
        else:
            status, headers, payload = self._api(request)
        request.status = status
        return status, headers, payload

    def _blob(self, path: str) -> tuple[int, dict[str, str], bytes]:
        content, expires = self.blobs.get(path.removeprefix("/blobs/"), (b"", 0.0))
        if time.time() > expires:
            return 403, {}, b"<Error>AuthenticationFailed: the signature has expired</Error>"
        return 200, {"Content-Type": "application/zip"}, content

    def _api(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        path = request.path.removeprefix(PREFIX)
        if request.method == "POST" and (
            m := re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)
        ):
            return self._installation_token(request, int(m.group(1)))
        credential = self._credential(request)
        if credential is None:
            return 401, {}, _json({"message": "Bad credentials"})
        headers = self._rate_headers(credential)
        remaining = self.remaining.get(credential, self.rate_limit)
        conditional = request.headers.get("If-None-Match")
        if remaining <= 0 and time.time() < self.reset_at:
            headers["X-RateLimit-Remaining"] = "0"
            return 403, headers, _json(
                {"message": f"API rate limit exceeded for {credential[:8]}.",
                 "documentation_url": "https://docs.github.com/rest/rate-limit"}
            )  # fmt: skip
        if remaining <= 0:
            self.remaining[credential] = remaining = self.rate_limit
        status, extra, payload = self._route(request, path)
        if not (status == 304 and conditional):
            self.remaining[credential] = remaining - 1
        headers.update(self._rate_headers(credential))
        headers.update(extra)
        return status, headers, payload

    def _route(self, request: Request, path: str) -> tuple[int, dict[str, str], bytes]:
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)", path)
        if not m:
            return 404, {}, _json({"message": "Not Found"})
        repo = self.repos.get(m.group(1))
        rest = m.group(2)
        if repo is None:
            return 404, {}, _json({"message": "Not Found"})
        method = request.method
        if method == "GET" and rest == "/actions/runs":
            return self._list_runs(request, repo)
        if method == "GET" and (a := re.fullmatch(r"/actions/runs/(\d+)", rest)):
            run = repo.runs.get(int(a.group(1)))
            if run is None:
                return 404, {}, _json({"message": "Not Found"})
            return self._conditional(request, _json(run))
        if method == "GET" and (a := re.fullmatch(r"/contents/(.+)", rest)):
            text = repo.files.get(a.group(1))
            if text is None:
                return 404, {}, _json({"message": "Not Found"})
            data = text.encode()
            return self._conditional(
                request,
                _json(
                    {
                        "type": "file", "encoding": "base64", "size": len(data),
                        "name": a.group(1).rsplit("/", 1)[-1], "path": a.group(1),
                        "sha": hashlib.sha1(data).hexdigest(),
                        "content": base64.encodebytes(data).decode(),
                    }
                ),
            )  # fmt: skip
        if method == "GET" and rest == "/actions/permissions/artifact-and-log-retention":
            if repo.retention_days is None:
                return 403, {}, _json({"message": "Resource not accessible by integration"})
            days = repo.retention_days
            return 200, {}, _json({"days": days, "maximum_allowed_days": max(days, 90)})
        if method == "GET" and (a := re.fullmatch(r"/actions/runs/(\d+)/attempts/(\d+)", rest)):
            run = repo.attempts.get((int(a.group(1)), int(a.group(2))))
            return (200, {}, _json(run)) if run else (404, {}, _json({"message": "Not Found"}))
        if method == "GET" and (a := re.fullmatch(r"/actions/runs/(\d+)/artifacts", rest)):
            items = [
                {k: v for k, v in art.items() if not k.startswith("_")}
                for art in repo.artifacts.get(int(a.group(1)), [])
            ]
            return self._page(request, items, "artifacts", f"{PREFIX}/repos/{repo.full_name}{rest}")
        if method == "GET" and (a := re.fullmatch(r"/actions/artifacts/(\d+)/zip", rest)):
            return self._artifact_redirect(repo, int(a.group(1)))
        if method == "POST" and rest == "/issues":
            number = len(repo.issues) + 1
            issue = {
                "number": number, "id": self.new_id(), "state": "open", "comments": [],
                "title": request.body["title"], "body": request.body.get("body", ""),
                "labels": [{"name": n} for n in request.body.get("labels", [])],
                "html_url": f"https://github.com/{repo.full_name}/issues/{number}",
            }  # fmt: skip
            repo.issues[number] = issue
            return 201, {}, _json({k: v for k, v in issue.items() if k != "comments"})
        if a := re.fullmatch(r"/issues/(\d+)(/comments)?", rest):
            issue = repo.issues.get(int(a.group(1)))
            if issue is None:
                return 404, {}, _json({"message": "Not Found"})
            if method == "POST" and a.group(2):
                issue["comments"].append(request.body["body"])
                return 201, {}, _json({"id": self.new_id(), "body": request.body["body"]})
            if method == "PATCH" and not a.group(2):
                issue.update(
                    {k: request.body[k] for k in ("state", "title", "body") if k in request.body}
                )
                return 200, {}, _json({k: v for k, v in issue.items() if k != "comments"})
        if method == "POST" and rest == "/check-runs":
            return self._create_check_run(request, repo)
        if method == "PATCH" and (a := re.fullmatch(r"/check-runs/(\d+)", rest)):
            check = repo.check_runs.get(int(a.group(1)))
            if check is None:
                return 404, {}, _json({"message": "Not Found"})
            check.update({k: v for k, v in request.body.items() if k != "output"})
            if "output" in request.body:
                output = dict(request.body["output"])
                annotations = list(output.pop("annotations", []))
                check["output"] = {**check.get("output", {}), **output}
                check.setdefault("annotations", []).extend(annotations)
            return 200, {}, _json(_public(check))
        if method == "GET" and (a := re.fullmatch(r"/commits/([0-9a-f]+)/check-runs", rest)):
            found = [_public(c) for c in repo.check_runs.values() if c["head_sha"] == a.group(1)]
            return 200, {}, _json({"total_count": len(found), "check_runs": found})
        return 404, {}, _json({"message": "Not Found"})

    def _list_runs(self, request: Request, repo: FakeRepo) -> tuple[int, dict[str, str], bytes]:
        runs = sorted(repo.runs.values(), key=lambda r: (r["created_at"], r["id"]), reverse=True)
        status = request.query.get("status")
        if status:
            runs = [r for r in runs if r["status"] == status]
        created = request.query.get("created", "")
        if created.startswith(">="):
            since = _parse(created[2:])
            runs = [r for r in runs if _parse(r["created_at"]) >= since]
        return self._page(
            request, runs, "workflow_runs", f"{PREFIX}/repos/{repo.full_name}/actions/runs"
        )

    def _page(
        self, request: Request, items: list[dict[str, Any]], key: str, path: str
    ) -> tuple[int, dict[str, str], bytes]:
        per_page = min(100, int(request.query.get("per_page", 30)))
        page = int(request.query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        payload = _json({"total_count": len(items), key: chunk})
        etag = '"' + hashlib.sha1(payload).hexdigest() + '"'
        headers = {"ETag": etag}
        last = max(1, -(-len(items) // per_page))
        links = []
        query = {k: v for k, v in request.query.items() if k != "page"}
        base = f"http://127.0.0.1:{self.port}{path}?" + "&".join(
            f"{k}={v}" for k, v in query.items()
        )
        if page < last:
            links.append(f'<{base}&page={page + 1}>; rel="next"')
            links.append(f'<{base}&page={last}>; rel="last"')
        if links:
            headers["Link"] = ", ".join(links)
        if request.headers.get("If-None-Match") == etag:
            return 304, headers, b""
        return 200, headers, payload

    def _conditional(self, request: Request, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        etag = '"' + hashlib.sha1(payload).hexdigest() + '"'
        if request.headers.get("If-None-Match") == etag:
            return 304, {"ETag": etag}, b""
        return 200, {"ETag": etag}, payload

    def _artifact_redirect(
        self, repo: FakeRepo, artifact_id: int
    ) -> tuple[int, dict[str, str], bytes]:
        for artifacts in repo.artifacts.values():
            for art in artifacts:
                if art["id"] == artifact_id:
                    if art["expired"]:
                        return 410, {}, _json({"message": "Artifact has expired"})
                    key = secrets.token_urlsafe(12)
                    self.blobs[key] = (art["_content"], time.time() + self.blob_lifetime)
                    return 302, {"Location": f"http://localhost:{self.port}/blobs/{key}"}, b""
        return 404, {}, _json({"message": "Not Found"})

    def _create_check_run(
        self, request: Request, repo: FakeRepo
    ) -> tuple[int, dict[str, str], bytes]:
        body = dict(request.body)
        if not body.get("name") or not body.get("head_sha"):
            return 422, {}, _json({"message": "Invalid request: name and head_sha are required"})
        output = dict(body.pop("output", {}) or {})
        annotations = list(output.pop("annotations", []))
        if len(annotations) > 50:
            return 422, {}, _json({"message": "Only 50 annotations are allowed per request"})
        if len(output.get("summary", "")) > 65535:
            return 422, {}, _json({"message": "output.summary is too long (maximum is 65535)"})
        check = {"id": self.new_id(), **body, "output": output, "annotations": annotations}
        repo.check_runs[check["id"]] = check
        return 201, {}, _json(_public(check))

    def _installation_token(
        self, request: Request, installation_id: int
    ) -> tuple[int, dict[str, str], bytes]:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        try:
            claims = jwt.decode(bearer, self.app_public_key, algorithms=["RS256"])
        except jwt.PyJWTError as exc:
            return 401, {}, _json({"message": f"A JSON web token could not be decoded: {exc}"})
        if str(claims.get("iss")) != str(self.app_id):
            return 401, {}, _json({"message": "'Issuer' claim ('iss') must be the App's id"})
        token = "ghs_" + secrets.token_hex(18)
        expires = datetime.now(UTC) + self.token_lifetime
        self.installation_tokens[token] = (installation_id, expires)
        return (
            201,
            {},
            _json(
                {"token": token, "expires_at": _iso(expires), "permissions": {"checks": "write"}}
            ),
        )

    def _credential(self, request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        if value in self.tokens:
            return value
        installation = self.installation_tokens.get(value)
        if installation and installation[1] > datetime.now(UTC):
            return value
        return None

    def _rate_headers(self, credential: str) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining.get(credential, self.rate_limit))),
            "X-RateLimit-Reset": str(self.reset_at),
            "X-RateLimit-Resource": "core",
        }


def junit_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            status, headers, payload = fake.handle(self)
            self.send_response(status)
            if payload and "Content-Type" not in headers:
                headers["Content-Type"] = "application/json; charset=utf-8"
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload and self.command != "HEAD":
                if fake.take_truncation(urlparse(self.path).path):
                    self.wfile.write(payload[: len(payload) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, *args: object) -> None:  # keep test output quiet
            return

    return Handler


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _public(check: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in check.items() if k != "annotations"} | {
        "output": {
            **check.get("output", {}),
            "annotations_count": len(check.get("annotations", [])),
        }
    }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
