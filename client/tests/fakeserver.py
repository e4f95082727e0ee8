"""A fake FlakeGuard server implementing the client's contract, in a thread on 127.0.0.1.

It checks the bearer token, parses multipart uploads itself (so a malformed
body fails the test), records what it received, and serves the quarantine
list in small pages so that pagination is exercised.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "fg-test-token-3f9a"
REPO = "acme/shop"


@dataclass
class ReceivedFile:
    filename: str
    content_type: str
    size: int
    sha256: str
    content: bytes  # kept only for small files


@dataclass
class ReceivedUpload:
    fields: dict[str, str]
    files: list[ReceivedFile]
    headers: dict[str, str]


@dataclass
class FakeFlakeGuard:
    repos: set[str] = field(default_factory=lambda: {REPO})
    quarantines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    page_size: int = 2
    # None, "500", "hang", "429", "drip"
    mode: str | None = None
    # Applied to this many requests, then the server behaves (None: all of them).
    mode_count: int | None = None
    # Applied only to requests whose path contains this (None: every request).
    mode_path: str | None = None
    retry_after: str = "120"
    # States GET /uploads/<id>/ walks through, one per request.
    upload_states: list[str] = field(default_factory=lambda: ["importing", "done"])
    # Origin written into returned links; None: the one the client used.
    advertised_origin: str | None = None
    uploads: list[ReceivedUpload] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _keys: dict[tuple[str, int, int], int] = field(default_factory=dict)
    _polls: dict[int, int] = field(default_factory=dict)
    _release: threading.Event = field(default_factory=threading.Event)
    httpd: ThreadingHTTPServer | None = None
    # Serve HTTPS with this context instead of plain HTTP.
    tls: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        host, port = self.httpd.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def start(self) -> FakeFlakeGuard:
        fake = self

        class Handler(_Handler):
            server_state = fake

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    def quarantine(
        self,
        classname: str,
        name: str,
        *,
        repo: str = REPO,
        key: str | None = None,
        reason: str = "flaky on CI",
        owner: str = "alice",
        file: str = "",
    ) -> None:
        from flakeguard_client.keys import test_key

        self.quarantines.setdefault(repo, []).append(
            {
                "test_key": key or test_key(classname, file, name),
                "classname": classname,
                "name": name,
                "file": file,
                "reason": reason,
                "owner": owner,
                "expires_at": "2099-01-01T00:00:00Z",
            }
        )

    def take_mode(self, path: str) -> str | None:
        if self.mode is None or (self.mode_path is not None and self.mode_path not in path):
            return None
        if self.mode_count is not None:
            if self.mode_count <= 0:
                return None
            self.mode_count -= 1
        return self.mode


class _Handler(BaseHTTPRequestHandler):
    server_state: FakeFlakeGuard
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing -----------------------------------------------------------

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _origin(self) -> str:
        scheme = "https" if self.server_state.tls else "http"
        return self.server_state.advertised_origin or f"{scheme}://{self.headers['Host']}"

    def _path(self) -> tuple[str, dict[str, str]]:
        target = self.path
        if target.startswith("http://"):  # absolute form: the request came through a proxy
            target = urllib.parse.urlunsplit(("", "", *urllib.parse.urlsplit(target)[2:4], ""))
        parts = urllib.parse.urlsplit(target)
        return parts.path, dict(urllib.parse.parse_qsl(parts.query))

    def _gate(self) -> bool:
        """Record the request, apply the failure mode and check the token; False: answered."""
        state = self.server_state
        state.requests.append((self.command, self.path, dict(self.headers.items())))
        mode = state.take_mode(self.path)
        if mode == "hang":
            state._release.wait(60)
            self.close_connection = True
            return False
        if mode == "drip":
            # Headers and then a body that never completes, a byte at a time.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(600):
                if state._release.wait(0.1):
                    break
                self.wfile.write(b" ")
                self.wfile.flush()
            self.close_connection = True
            return False
        if mode == "413":
            # Refused on the declared length alone: the body is never read.
            self._send(413, {"detail": "the upload is larger than the limit of 1,000 bytes"})
            return False
        if mode == "500":
            self._drain()
            self._send(500, {"detail": "Internal Server Error"})
            return False
        if mode == "429":
            self._drain()
            self._send(
                429, {"detail": "Request was throttled."}, {"Retry-After": state.retry_after}
            )
            return False
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._drain()
            self._send(401, {"detail": "Invalid token."})
            return False
        return True

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    # -- endpoints ----------------------------------------------------------

    def do_GET(self) -> None:
        if not self._gate():
            return
        path, query = self._path()
        if path == "/api/v1/quarantine/":
            return self._quarantine(query)
        match = re.fullmatch(r"/api/v1/uploads/(\d+)/", path)
        if match:
            return self._upload_status(int(match[1]))
        self._send(404, {"detail": "Not found."})

    def do_POST(self) -> None:
        if not self._gate():
            return
        path, _ = self._path()
        if path != "/api/v1/uploads/":
            self._drain()
            return self._send(404, {"detail": "Not found."})
        self._upload()

    def _quarantine(self, query: dict[str, str]) -> None:
        state = self.server_state
        repo = query.get("repo", "")
        if repo not in state.repos:
            return self._send(404, {"detail": "Not found."})
        items = state.quarantines.get(repo, [])
        size = min(int(query.get("page_size", "100")), state.page_size)
        page = int(query.get("page", "1"))
        chunk = items[(page - 1) * size : page * size]

        def link(number: int) -> str:
            q = urllib.parse.urlencode(
                {"repo": repo, "page_size": query.get("page_size", ""), "page": number}
            )
            return f"{self._origin()}/api/v1/quarantine/?{q}"

        self._send(
            200,
            {
                "next": link(page + 1) if page * size < len(items) else None,
                "previous": link(page - 1) if page > 1 else None,
                "results": chunk,
            },
        )

    def _upload_json(self, upload_id: int, state: str = "pending") -> dict[str, Any]:
        upload = self.server_state.uploads[upload_id - 1]
        summary = None
        if state == "done":
            summary = {
                "results_stored": 3,
                "files_stored": len(upload.files),
                "files_refused": [{"path": "bad.xml", "error": "not XML"}],
            }
        return {
            "id": upload_id,
            "url": f"{self._origin()}/api/v1/uploads/{upload_id}/",
            "state": state,
            "summary": summary,
            "error": "the archive is corrupt" if state == "failed" else "",
        }

    def _upload_status(self, upload_id: int) -> None:
        state = self.server_state
        if not 1 <= upload_id <= len(state.uploads):
            return self._send(404, {"detail": "Not found."})
        polls = state._polls.get(upload_id, 0)
        state._polls[upload_id] = polls + 1
        states = state.upload_states or ["pending"]
        self._send(200, self._upload_json(upload_id, states[min(polls, len(states) - 1)]))

    def _upload(self) -> None:
        state = self.server_state
        if "Content-Length" not in self.headers:
            return self._send(411, {"detail": "Content-Length required."})
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        ctype = self.headers.get("Content-Type", "")
        match = re.match(r'multipart/form-data; boundary=("?)([^";]+)\1$', ctype)
        if not match or len(body) != length:
            return self._send(400, {"detail": "not a multipart body"})
        fields, files = _parse_multipart(body, match[2].encode())
        errors: dict[str, list[str]] = {}
        for name in ("repo", "run_id", "run_attempt", "sha", "branch", "event", "started_at"):
            if name not in fields:
                errors[name] = ["This field is required."]
        for name in ("run_id", "run_attempt"):
            if name in fields and not fields[name].isdigit():
                errors[name] = ["A valid integer is required."]
        if "started_at" in fields:
            try:
                if datetime.fromisoformat(fields["started_at"]).tzinfo is None:
                    raise ValueError
            except ValueError:
                errors["started_at"] = ["Datetime has wrong format."]
        if not files:
            errors["files"] = ["No file was submitted."]
        for f in files:
            if not f.filename.endswith((".xml", ".zip")):
                errors["files"] = [f"{f.filename}: only .xml and .zip files"]
        if errors:
            return self._send(400, errors)
        if fields["repo"] not in state.repos:
            return self._send(404, {"detail": "Not found."})
        key = (fields["repo"], int(fields["run_id"]), int(fields["run_attempt"]))
        if key in state._keys:
            upload_id = state._keys[key]
            return self._send(200, self._upload_json(upload_id))
        state.uploads.append(ReceivedUpload(fields, files, dict(self.headers.items())))
        upload_id = state._keys[key] = len(state.uploads)
        self._send(202, self._upload_json(upload_id))


def _parse_multipart(body: bytes, boundary: bytes) -> tuple[dict[str, str], list[ReceivedFile]]:
    delimiter = b"--" + boundary
    assert body.startswith(delimiter), "the body does not start with the boundary"
    closing = b"\r\n" + delimiter + b"--\r\n"
    assert body.endswith(closing), "the body does not end with the closing boundary"
    fields: dict[str, str] = {}
    files: list[ReceivedFile] = []
    for part in body[len(delimiter) : -len(closing)].split(b"\r\n" + delimiter):
        assert part.startswith(b"\r\n"), "a boundary line is not followed by CRLF"
        head, _, content = part[2:].partition(b"\r\n\r\n")
        headers = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n") if line)
        disposition = headers["Content-Disposition"]
        name = re.search(r'name="([^"]*)"', disposition)[1]
        filename = re.search(r'filename="([^"]*)"', disposition)
        if filename:
            files.append(
                ReceivedFile(
                    filename=filename[1],
                    content_type=headers.get("Content-Type", ""),
                    size=len(content),
                    sha256=hashlib.sha256(content).hexdigest(),
                    content=content if len(content) < 1 << 20 else b"",
                )
            )
        else:
            fields[name] = content.decode()
    return fields, files
