"""A multipart/form-data body streamed from disk, with its length known up front.

Reports can be hundreds of megabytes; the body is produced in chunks as it is
sent, so memory use does not grow with the files.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

CHUNK_SIZE = 256 * 1024

_CONTENT_TYPES = {".xml": "application/xml", ".zip": "application/zip"}


class FileChangedError(OSError):
    """A file's size changed between measuring the body and sending it."""


def _quote(value: str) -> bytes:
    # As browsers do (HTML's form encoding): UTF-8, with the three characters
    # that would end the quoted string or the header percent-encoded.
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A").encode()


class MultipartBody:
    """Text fields, then each file as a part named ``file_field`` with its base name."""

    def __init__(
        self,
        fields: Sequence[tuple[str, str]],
        files: Sequence[Path],
        file_field: str = "files",
    ) -> None:
        self.boundary = "flakeguard-" + secrets.token_hex(16)
        self._segments: list[bytes | tuple[Path, int]] = []
        dash = f"--{self.boundary}\r\n".encode()
        for name, value in fields:
            self._segments.append(
                dash
                + b'Content-Disposition: form-data; name="'
                + _quote(name)
                + b'"\r\n\r\n'
                + value.encode()
                + b"\r\n"
            )
        for path in files:
            content_type = _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
            self._segments.append(
                dash
                + b'Content-Disposition: form-data; name="'
                + _quote(file_field)
                + b'"; filename="'
                + _quote(path.name)
                + b'"\r\nContent-Type: '
                + content_type.encode()
                + b"\r\n\r\n"
            )
            self._segments.append((path, os.stat(path).st_size))
            self._segments.append(b"\r\n")
        self._segments.append(f"--{self.boundary}--\r\n".encode())

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return sum(len(s) if isinstance(s, bytes) else s[1] for s in self._segments)

    def chunks(self, size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The body, at most ``size`` bytes at a time; can be iterated again to resend."""
        for segment in self._segments:
            if isinstance(segment, bytes):
                yield segment
                continue
            path, expected = segment
            left = expected
            with open(path, "rb") as f:
                while left:
                    chunk = f.read(min(size, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    yield chunk
                if left or f.read(1):
                    raise FileChangedError(f"{path} changed while it was being uploaded")
