"""Sending one notification: the message for each kind of channel, signing, and the POST.

A webhook body is signed as GitHub signs its own: ``X-FlakeGuard-Signature-256:
sha256=<hex HMAC-SHA256 of the body with the channel's secret>``, so a
receiver checks it with the same few lines. Slack gets a short text message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import requests

SIGNATURE_HEADER = "X-FlakeGuard-Signature-256"
TIMEOUT_SECONDS = 10

_HEADLINES = {
    "became_flaky": "{test} became flaky (score {score})",
    "fixed": "{test} is stable again",
    "quarantine_expires": "the quarantine of {test} expires on {expires_at}",
    "quarantine_expired": "the quarantine of {test} expired",
    "incident": "infrastructure incident in {job}: {tests_failed} of {tests_in_job} tests failed",
}


class DeliveryRefused(Exception):
    """The receiver answered with a client error: sending again will not help."""


class DeliveryFailed(Exception):
    """The receiver could not take it now (a 5xx, 408, 429, no answer): worth another try."""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headline(event: dict[str, Any]) -> str:
    template = _HEADLINES.get(event.get("kind", ""), "{kind}")
    return f"[{event.get('repo', '')}] " + template.format_map(_Blank(event))


def slack_message(event: dict[str, Any], base_url: str) -> dict[str, Any]:
    lines = [headline(event)]
    if event.get("path"):
        lines.append(f"<{base_url}{event['path']}|open in FlakeGuard>")
    lines += [f"• {line}" for line in event.get("evidence", [])]
    if event.get("owners"):
        lines.append("owners: " + ", ".join(event["owners"]))
    if event.get("quarantined"):
        lines.append("quarantined automatically")
    return {"text": "\n".join(lines)}


def webhook_body(event: dict[str, Any], base_url: str) -> dict[str, Any]:
    url = f"{base_url}{event['path']}" if event.get("path") else None
    return {"event": event.get("kind"), "summary": headline(event), "url": url, **event}


def send(*, kind: str, url: str, secret: str, event: dict[str, Any], base_url: str) -> int:
    """POST the event to the channel; returns the status. Raises DeliveryRefused on a 4xx
    (but 408 and 429), and DeliveryFailed on a 5xx, a 408 or 429, or no answer."""
    if kind == "slack":
        body = json.dumps(slack_message(event, base_url)).encode()
        headers = {"Content-Type": "application/json"}
    else:
        body = json.dumps(webhook_body(event, base_url), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "X-FlakeGuard-Event": str(event.get("kind"))}
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
    try:
        response = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        # The exception's text may hold the URL, a secret for Slack: name its kind only.
        raise DeliveryFailed(f"the channel did not answer ({type(exc).__name__})") from None
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise DeliveryFailed(f"the channel answered {response.status_code}")
    if response.status_code >= 400:
        raise DeliveryRefused(f"the channel refused the notification: {response.status_code}")
    return response.status_code


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "?"
