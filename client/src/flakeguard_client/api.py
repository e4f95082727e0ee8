"""The FlakeGuard server's HTTP API: uploads and the quarantine list.

Every public call is bounded by the timeout as a whole (connecting, sending,
waiting, reading, following pages, retrying after a 429), not per socket
operation: a server that accepts connections and then drips bytes or never
answers must not stall a build. Any failure is an ApiError whose message is
one line fit to print; the token never appears in it.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from flakeguard_client import __version__
from flakeguard_client.config import RunMetadata, ServerSettings
from flakeguard_client.keys import test_key
from flakeguard_client.multipart import FileChangedError, MultipartBody

USER_AGENT = f"flakeguard-client/{__version__}"
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_RATE_LIMIT_RETRIES = 3
MAX_PAGES = 10_000
FINAL_STATES = ("done", "failed")


class ApiError(Exception):
    """The server could not be reached, timed out, or answered with an error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Timeout(ApiError):
    pass


@dataclass(frozen=True)
class Upload:
    id: int
    url: str
    state: str
    summary: dict[str, Any] | None
    error: str
    # False when the server already had this run attempt (HTTP 200 instead of 202).
    created: bool = True


@dataclass(frozen=True)
class Quarantine:
    test_key: str
    classname: str
    name: str
    file: str
    reason: str
    owner: str
    expires_at: str


class _Deadline:
    def __init__(self, seconds: float, where: str) -> None:
        self.seconds = seconds
        self.where = where
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise self.timeout()
        return left

    def timeout(self) -> Timeout:
        return Timeout(f"no answer from {self.where} within {self.seconds:g} s (--timeout)")

    def expired(self) -> bool:
        return time.monotonic() >= self._end


@dataclass
class _Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def _abort(conn: http.client.HTTPConnection) -> None:
    # shutdown() wakes a thread blocked in recv/send on this socket; close() would not.
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class Client:
    """One FlakeGuard server, reached with one token."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._base = urllib.parse.urlsplit(settings.url)
        self.where = self._display(settings.url)

    # -- public calls -------------------------------------------------------

    def upload(self, metadata: RunMetadata, files: Sequence[Path]) -> Upload:
        """Send the reports of one run attempt."""
        body = MultipartBody(metadata.form_fields(), files)
        response = self._call("POST", self._url("/api/v1/uploads/"), body=body)
        return self._upload_from(response, created=response.status != 200)

    def get_upload(self, url: str) -> Upload:
        return self._upload_from(self._call("GET", self._rebase(url)))

    def wait(self, upload: Upload, poll_interval: float = 0.25) -> Upload:
        """Poll until the upload is done or failed, within one timeout."""
        deadline = _Deadline(self.settings.timeout, self.where)
        url = self._rebase(upload.url) if upload.url else self._url(f"/api/v1/uploads/{upload.id}/")
        current = upload
        while current.state not in FINAL_STATES:
            try:
                time.sleep(min(poll_interval, deadline.remaining()))
                current = self._upload_from(self._call("GET", url, deadline=deadline))
            except Timeout:
                raise Timeout(
                    f"upload {upload.id} is still {current.state} after "
                    f"{self.settings.timeout:g} s (--timeout)"
                ) from None
            poll_interval = min(poll_interval * 2, 5.0)
        return current

    def quarantine(self, repo: str) -> list[Quarantine]:
        """Every active quarantine of the repository, all pages."""
        deadline = _Deadline(self.settings.timeout, self.where)
        query = urllib.parse.urlencode({"repo": repo, "page_size": 10000})
        url: str | None = self._url(f"/api/v1/quarantine/?{query}")
        seen: set[str] = set()
        found: list[Quarantine] = []
        while url is not None:
            if url in seen or len(seen) >= MAX_PAGES:
                raise ApiError(f"the quarantine list from {self.where} does not end (page {url})")
            seen.add(url)
            page = self._json(self._call("GET", url, deadline=deadline))
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise ApiError(f"unexpected answer from {self.where}: no list of results")
            found.extend(self._quarantine_from(item) for item in results)
            link = page.get("next")
            if link is not None and not isinstance(link, str):
                raise ApiError(f"unexpected answer from {self.where}: 'next' is not a URL")
            url = self._rebase(link) if link else None
        return found

    # -- decoding -----------------------------------------------------------

    def _json(self, response: _Response) -> Any:
        try:
            return json.loads(response.body)
        except ValueError:
            raise ApiError(
                f"unexpected answer from {self.where} (HTTP {response.status}): not JSON"
            ) from None

    def _upload_from(self, response: _Response, created: bool = True) -> Upload:
        data = self._json(response)
        if not isinstance(data, dict):
            raise ApiError(f"unexpected answer from {self.where}: not an upload")
        upload_id, url, state = data.get("id"), data.get("url"), data.get("state")
        summary, error = data.get("summary"), data.get("error") or ""
        if (
            not isinstance(upload_id, int)
            or not isinstance(url, str)
            or not isinstance(state, str)
            or not isinstance(summary, dict | None)
            or not isinstance(error, str)
        ):
            raise ApiError(f"unexpected answer from {self.where}: not an upload")
        return Upload(upload_id, url, state, summary, error, created)

    def _quarantine_from(self, item: Any) -> Quarantine:
        if not isinstance(item, dict):
            raise ApiError(f"unexpected answer from {self.where}: a quarantine is not an object")
        text = {
            key: value if isinstance(value := item.get(key), str) else ""
            for key in ("test_key", "classname", "name", "file", "reason", "owner", "expires_at")
        }
        if not text["test_key"]:
            if not text["name"]:
                raise ApiError(f"unexpected answer from {self.where}: a quarantine has no test")
            # Same identity the server computes, from the same three fields.
            text["test_key"] = test_key(text["classname"], text["file"], text["name"])
        return Quarantine(**text)

    # -- URLs ---------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.settings.url + path

    def _rebase(self, link: str) -> str:
        # Links the server hands back (upload url, next page) are followed on
        # the configured origin: behind a proxy the server may name itself
        # http://internal-host, and the token must not go anywhere else.
        parts = urllib.parse.urlsplit(urllib.parse.urljoin(self.settings.url + "/", link))
        return urllib.parse.urlunsplit(
            (self._base.scheme, self._base.netloc, parts.path, parts.query, "")
        )

    @staticmethod
    def _display(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"

    # -- transport ----------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        *,
        body: MultipartBody | None = None,
        deadline: _Deadline | None = None,
    ) -> _Response:
        deadline = deadline or _Deadline(self.settings.timeout, self.where)
        for attempt in range(MAX_RATE_LIMIT_RETRIES + 1):
            response = self._send(method, url, body, deadline)
            if response.status != 429:
                break
            wait = _retry_after(response.headers.get("Retry-After"))
            try:
                budget = deadline.remaining()
            except Timeout:
                budget = 0.0
            if wait is None or wait >= budget or attempt == MAX_RATE_LIMIT_RETRIES:
                after = f"; it asks to retry after {wait:g} s" if wait is not None else ""
                raise ApiError(
                    f"{self.where} is rate limiting this client (HTTP 429){after}", status=429
                )
            time.sleep(wait)
        if 200 <= response.status < 300:
            return response
        raise ApiError(self._error_message(response), status=response.status)

    def _send(
        self, method: str, url: str, body: MultipartBody | None, deadline: _Deadline
    ) -> _Response:
        parts = urllib.parse.urlsplit(url)
        conn, target, extra = self._connection(parts, deadline.remaining())
        watchdog = threading.Timer(deadline.remaining(), _abort, args=(conn,))
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.connect()
            conn.putrequest(method, target, skip_accept_encoding=True)
            headers = {
                "Authorization": f"Bearer {self.settings.token}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
                "Connection": "close",
                **extra,
            }
            if body is not None:
                headers["Content-Type"] = body.content_type
                headers["Content-Length"] = str(len(body))
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            if body is not None:
                try:
                    for chunk in body.chunks():
                        self._settimeout(conn, deadline)
                        conn.send(chunk)
                except FileChangedError:
                    raise
                except OSError:
                    # The server may answer early (401, 413) and close without
                    # reading the rest; that answer says more than EPIPE does.
                    if deadline.expired():
                        raise
                    self._settimeout(conn, deadline)
                    return self._read(conn, deadline)
            self._settimeout(conn, deadline)
            return self._read(conn, deadline)
        except FileChangedError as exc:
            raise ApiError(str(exc)) from None
        except Timeout:
            raise
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            if deadline.expired() or isinstance(exc, TimeoutError):
                raise deadline.timeout() from None
            raise ApiError(f"cannot reach {self.where}: {_describe(exc)}") from None
        finally:
            watchdog.cancel()
            conn.close()

    @staticmethod
    def _settimeout(conn: http.client.HTTPConnection, deadline: _Deadline) -> None:
        if conn.sock is not None:
            conn.sock.settimeout(deadline.remaining())

    def _read(self, conn: http.client.HTTPConnection, deadline: _Deadline) -> _Response:
        response = conn.getresponse()
        chunks: list[bytes] = []
        size = 0
        while True:
            self._settimeout(conn, deadline)
            chunk = response.read(64 * 1024)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ApiError(f"the answer from {self.where} is larger than 64 MiB")
            chunks.append(chunk)
        return _Response(response.status, response.headers, b"".join(chunks))

    def _connection(
        self, parts: urllib.parse.SplitResult, timeout: float
    ) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
        """The connection, the request target and any proxy headers for one request."""
        host, port = parts.hostname or "", parts.port
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        https = parts.scheme == "https"
        context = ssl.create_default_context() if https else None
        proxy = urllib.request.getproxies().get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(host):
            if "://" not in proxy:
                proxy = "http://" + proxy
            p = urllib.parse.urlsplit(proxy)
            auth: dict[str, str] = {}
            if p.username:
                user = urllib.parse.unquote(p.username)
                password = urllib.parse.unquote(p.password or "")
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                auth["Proxy-Authorization"] = f"Basic {token}"
            proxy_host, proxy_port = p.hostname or "", p.port or 80
            if https:
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    proxy_host, proxy_port, timeout=timeout, context=context
                )
                conn.set_tunnel(host, port, headers=auth)
                return conn, target, {}
            conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)
            absolute = urllib.parse.urlunsplit(("http", parts.netloc, parts.path, parts.query, ""))
            return conn, absolute, auth
        if https:
            return (
                http.client.HTTPSConnection(host, port, timeout=timeout, context=context),
                target,
                {},
            )
        return http.client.HTTPConnection(host, port, timeout=timeout), target, {}

    def _error_message(self, response: _Response) -> str:
        status = response.status
        detail = _detail(response.body)
        said = f": {detail}" if detail else ""
        if status in (401, 403):
            text = (
                f"{self.where} refused the token (HTTP {status}){said}; "
                "check FLAKEGUARD_TOKEN or --token"
            )
        elif status == 404:
            text = (
                f"{self.where} answered HTTP 404: the repository is not known to the server or "
                "not visible to this token (or the URL is not a FlakeGuard server)"
            )
        elif status == 413:
            text = f"{self.where} refused the upload as too large (HTTP 413){said}"
        elif status == 400:
            text = f"{self.where} refused the request (HTTP 400){said}"
        elif 300 <= status < 400:
            location = response.headers.get("Location", "")
            text = (
                f"{self.where} redirects (HTTP {status}) to {self._display(location) if location else '?'}: "
                "set FLAKEGUARD_URL to the address it redirects to"
            )
        else:
            text = f"{self.where} answered HTTP {status}{said}"
        return self._redact(text)

    def _redact(self, text: str) -> str:
        return text.replace(self.settings.token, "***") if self.settings.token else text


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(body: bytes) -> str:
    """What an error body says, on one short line."""
    try:
        data = json.loads(body)
    except ValueError:
        # An HTML error page says nothing useful on one line.
        text = body.decode("utf-8", "replace").strip()
        text = "" if text.startswith("<") else text
    else:
        text = _flatten(data)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _flatten(data: Any, key: str = "") -> str:
    if isinstance(data, dict):
        if set(data) == {"detail"} and not key:
            return _flatten(data["detail"])
        return "; ".join(_flatten(value, k) for k, value in data.items())
    text = " ".join(_flatten(item) for item in data) if isinstance(data, list) else str(data)
    return f"{key}: {text}" if key else text


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "the server closed the connection"
    return str(exc) or type(exc).__name__
