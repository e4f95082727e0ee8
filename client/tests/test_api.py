"""The pure parts of the HTTP client: error bodies, Retry-After, link rebasing."""

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from flakeguard_client.api import Client, _detail, _retry_after
from flakeguard_client.config import ServerSettings


def test_field_errors_are_flattened_to_one_line() -> None:
    body = json.dumps({"sha": ["not a sha"], "files": ["a.txt: only .xml and .zip\nfiles"]})
    assert _detail(body.encode()) == "sha: not a sha; files: a.txt: only .xml and .zip files"
    assert _detail(b'{"detail": "Invalid token."}') == "Invalid token."
    assert _detail(b"<html><body>Bad Gateway</body></html>") == ""
    assert _detail(b"x" * 1000).endswith("...")
    assert len(_detail(b"x" * 1000)) == 300


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert _retry_after("120") == 120
    assert _retry_after(None) is None
    assert _retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 50 < (_retry_after(later) or 0) <= 60


def test_links_are_followed_on_the_configured_origin() -> None:
    client = Client(ServerSettings("https://fg.example:8443/prefix", "t", 5))
    assert client._rebase("http://internal:8000/prefix/api/v1/uploads/3/") == (
        "https://fg.example:8443/prefix/api/v1/uploads/3/"
    )
    assert client._rebase("/prefix/api/v1/quarantine/?cursor=abc&page_size=10000") == (
        "https://fg.example:8443/prefix/api/v1/quarantine/?cursor=abc&page_size=10000"
    )
    assert client.where == "https://fg.example:8443"
