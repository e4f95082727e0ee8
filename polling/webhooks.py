"""GitHub's webhook receiver, ``POST /webhooks/github``.

A delivery is refused before anything is read into the database when its body
is larger than ``FLAKEGUARD_WEBHOOK_MAX_BYTES`` (413) or its
``X-Hub-Signature-256`` matches none of the ``GITHUB_WEBHOOK_SECRET`` secrets
(401); with no secret configured the endpoint is disabled (503). An accepted
delivery is recorded once by its ``X-GitHub-Delivery`` id, in the transaction
that writes its effects, so a redelivery, even ten at once, changes nothing
more. What GitHub announces becomes rows only: ingest jobs for completed
workflow runs, quarantines from the check run's button, repositories attached
to or detached from the GitHub App. Nothing here calls GitHub: the jobs are
dispatched after commit and fetch what they need, so a delivery is answered
after a handful of queries. A signature vouches for the sender, not for the
fields: every field that becomes a row, a job or a loop bound is checked
before anything is recorded, and a bad one is answered 400 naming it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ingest.timestamps import parse_timestamp
from polling.checks import QUARANTINE_ACTION_ID
from polling.github import verify_webhook_signature
from polling.models import WebhookDelivery
from polling.publishing import quarantine_from_check_run
from polling.repositories import (
    attach_installation_repositories,
    detach_installation,
    detach_installation_repositories,
    ingest_completed_run,
)

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 * 1024
# GitHub's delivery ids are GUIDs (36 characters); the column holds 64.
MAX_DELIVERY_ID_CHARS = 64

Outcome = dict[str, Any]
Handler = Callable[[str, dict[str, Any]], Outcome]


class BodyTooLarge(Exception):
    """The request body is larger than the configured cap."""


class BadPayload(ValueError):
    """A correctly signed delivery that is not what GitHub sends."""


class BadField(BadPayload):
    """One field of a delivery is not what GitHub sends; the answer names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@csrf_exempt
@require_POST
def github_webhook(request: HttpRequest) -> JsonResponse:
    """Verify, deduplicate and apply one delivery; JSON answers say what became of it."""
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    event = request.headers.get("X-GitHub-Event", "")
    secrets = webhook_secrets()
    if not secrets:
        return _refuse(
            503, "webhooks are disabled: GITHUB_WEBHOOK_SECRET is not set", event, delivery_id
        )
    try:
        body = read_body(request, max_bytes=settings.FLAKEGUARD_WEBHOOK_MAX_BYTES)
    except BodyTooLarge as exc:
        return _refuse(413, str(exc), event, delivery_id)
    except BadPayload as exc:
        return _refuse(400, str(exc), event, delivery_id)
    signature = request.headers.get("X-Hub-Signature-256", "")
    if not verify_webhook_signature(body, signature, secrets):
        reason = "bad signature" if signature else "missing X-Hub-Signature-256"
        return _refuse(401, reason, event, delivery_id)
    if not event or not delivery_id or len(delivery_id) > MAX_DELIVERY_ID_CHARS:
        return _refuse(
            400, "missing or malformed X-GitHub-Event / X-GitHub-Delivery", event, delivery_id
        )
    try:
        payload = parse_payload(body, content_type=request.content_type or "")
        action = _text(payload.get("action"))
        check_payload(event, action, payload)
    except BadPayload as exc:
        return _refuse(400, str(exc), event, delivery_id, field=getattr(exc, "field", None))

    repo = _text(_dict(payload.get("repository")).get("full_name"))
    try:
        delivery, created, outcome = record_delivery(
            delivery_id=delivery_id, event=event, action=action, repo=repo, payload=payload
        )
    except BadPayload as exc:
        return _refuse(400, str(exc), event, delivery_id, field=getattr(exc, "field", None))
    if not created:
        logger.info(
            "webhook %s.%s repo=%s delivery=%s: duplicate of the delivery received at %s",
            event, action, repo or "-", delivery_id, delivery.received_at.isoformat(),
        )  # fmt: skip
        return JsonResponse({"status": "duplicate", "delivery": delivery_id})
    logger.info(
        "webhook %s.%s repo=%s delivery=%s: %s",
        event, action, repo or "-", delivery_id, json.dumps(outcome, sort_keys=True),
    )  # fmt: skip
    status = "ignored" if "ignored" in outcome else "ok"
    return JsonResponse({"status": status, "delivery": delivery_id, **outcome})


def webhook_secrets() -> list[str]:
    """The secrets a signature may match: several while a secret is being rotated."""
    configured = settings.GITHUB_WEBHOOK_SECRET
    if isinstance(configured, str):
        configured = configured.split(",")
    return [secret.strip() for secret in configured if secret.strip()]


def read_body(request: HttpRequest, *, max_bytes: int) -> bytes:
    """The request body, refused once it is known to exceed ``max_bytes``.

    A declared Content-Length over the cap is refused before a byte is read;
    a body without one (chunked, under ASGI) is read in chunks and refused as
    soon as it passes the cap, so at most ``max_bytes + 1`` bytes are held.
    """
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise BadPayload(f"malformed Content-Length {declared[:40]!r}") from None
        if length > max_bytes:
            raise BodyTooLarge(f"body of {length:,} bytes exceeds the {max_bytes:,}-byte cap")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = request.read(min(READ_CHUNK_BYTES, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"body exceeds the {max_bytes:,}-byte cap")
        chunks.append(chunk)


def parse_payload(body: bytes, *, content_type: str) -> dict[str, Any]:
    """The JSON object of a delivery, sent as JSON or as a form's ``payload`` field."""
    try:
        if content_type == "application/x-www-form-urlencoded":
            fields = parse_qs(body.decode("utf-8"), max_num_fields=10)
            body = fields.get("payload", [""])[0].encode("utf-8")
        payload = json.loads(body)
    # RecursionError: a deeply nested document (the signature vouches for the
    # sender, not for the shape) must not become a 500.
    except (ValueError, RecursionError) as exc:
        raise BadPayload(f"payload is not valid JSON: {exc}"[:200]) from None
    if not isinstance(payload, dict):
        raise BadPayload("payload is not a JSON object")
    return payload


def record_delivery(
    *, delivery_id: str, event: str, action: str, repo: str, payload: dict[str, Any]
) -> tuple[WebhookDelivery, bool, Outcome]:
    """Record the delivery and apply its event in one transaction, unless it came before.

    The delivery row is inserted first: a concurrent delivery of the same id
    waits on the unique index until this transaction ends, then finds the row
    (``get_or_create`` reads again after the IntegrityError) and does nothing,
    so ten simultaneous redeliveries make one set of effects. An error rolls
    the row back with the effects, and GitHub's redelivery is then applied.
    """
    with transaction.atomic():
        delivery, created = WebhookDelivery.objects.get_or_create(
            delivery_id=delivery_id,
            defaults={
                "event": event[:64],
                "action": action[:64],
                "repository": repo[:200],
            },
        )
        if not created:
            return delivery, False, delivery.outcome
        handler = HANDLERS.get(event)
        outcome = handler(action, payload) if handler else {"ignored": f"event {event!r}"}
        delivery.outcome = outcome
        delivery.save(update_fields=["outcome"])
    return delivery, True, outcome


# --- payload checks -------------------------------------------------------------

# GitHub lets a workflow run be re-run 50 times; a completed attempt queues a job
# for itself and for every earlier one not queued yet, so the attempt number is
# also the number of rows one delivery may write.
MAX_RUN_ATTEMPT = 100
MAX_ID = 2**63 - 1  # GitHub's ids land in bigint columns
_SHA = re.compile(r"[0-9a-fA-F]{40}(?:[0-9a-fA-F]{24})?")  # SHA-1, or SHA-256 object ids
_MAX_TIMESTAMP_CHARS = 40


def check_payload(event: str, action: str, payload: dict[str, Any]) -> None:
    """Raise BadField for the first field of the delivery that GitHub would never send."""
    check = _CHECKS.get(event)
    if check is not None:
        check(action, payload)


def _check_workflow_run(action: str, payload: dict[str, Any]) -> None:
    _check_repository(payload)
    _check_installation(action, payload)
    if action != "completed":
        return  # ignored: nothing of it is read
    run = payload.get("workflow_run")
    if not isinstance(run, dict):
        raise BadField("workflow_run", "missing, or not an object")
    _check_int(run, "id", "workflow_run.id")
    _check_int(run, "run_attempt", "workflow_run.run_attempt", most=MAX_RUN_ATTEMPT, optional=True)
    sha = run.get("head_sha")
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise BadField("workflow_run.head_sha", f"not a commit sha (40 hex digits): {_shown(sha)}")
    # Bounded as the columns that keep them are (WorkflowRun.branch, .event, .workflow).
    _check_str(run, "head_branch", "workflow_run.head_branch", 255)
    _check_str(run, "event", "workflow_run.event", 40)
    _check_str(run, "name", "workflow_run.name", 255)
    for key in ("created_at", "run_started_at", "updated_at"):
        value = run.get(key)
        field = f"workflow_run.{key}"
        if isinstance(value, str) and len(value) > _MAX_TIMESTAMP_CHARS:
            raise BadField(field, f"not an ISO-8601 time: {_shown(value)}")
        try:
            parse_timestamp(value, field=field)
        except ValueError as exc:
            raise BadField(field, str(exc).removeprefix(f"{field} ").removeprefix("is ")) from None


def _check_check_run(action: str, payload: dict[str, Any]) -> None:
    _check_repository(payload)
    if action != "requested_action":
        return
    check = _dict(payload.get("check_run"))
    _check_int(check, "id", "check_run.id", optional=True)
    _check_str(check, "head_sha", "check_run.head_sha", 64)
    _check_str(_dict(payload.get("sender")), "login", "sender.login", 255)


def _check_installation(action: str, payload: dict[str, Any]) -> None:
    _check_int(_dict(payload.get("installation")), "id", "installation.id", optional=True)


def _check_repository(payload: dict[str, Any]) -> None:
    repository = _dict(payload.get("repository"))
    _check_str(repository, "full_name", "repository.full_name", 200)  # Repository.full_name
    _check_str(repository, "default_branch", "repository.default_branch", 255)


def _check_int(
    data: dict[str, Any], key: str, field: str, *, most: int = MAX_ID, optional: bool = False
) -> None:
    value = data.get(key)
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise BadField(field, f"must be an integer from 1 to {most:,}, not {_shown(value)}")


def _check_str(data: dict[str, Any], key: str, field: str, most: int) -> None:
    """An optional text field: absent, null, or a string of at most ``most`` characters."""
    value = data.get(key)
    if value is None:
        return
    if not isinstance(value, str):
        raise BadField(field, f"must be a string, not {_shown(value)}")
    if len(value) > most:
        raise BadField(field, f"longer than {most} characters ({len(value):,})")


def _shown(value: Any) -> str:
    """A value for an error message: JSON, cut short (a hostile one may be huge)."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:40] + "…"


_CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "workflow_run": _check_workflow_run,
    "check_run": _check_check_run,
    "installation": _check_installation,
    "installation_repositories": _check_installation,
}


# --- events -------------------------------------------------------------------


def _on_ping(action: str, payload: dict[str, Any]) -> Outcome:
    return {"pong": True}


def _on_workflow_run(action: str, payload: dict[str, Any]) -> Outcome:
    if action != "completed":
        return {"ignored": f"workflow_run action {action!r}"}
    run = payload.get("workflow_run")
    if not isinstance(run, dict) or not isinstance(run.get("id"), int):
        raise BadPayload("workflow_run payload without a run id")
    repo_data = _dict(payload.get("repository"))
    try:
        return ingest_completed_run(
            full_name=_text(repo_data.get("full_name")),
            installation_id=_installation_id(payload),
            default_branch=_text(repo_data.get("default_branch")),
            run=run,
        )
    except ValueError as exc:
        raise BadPayload(str(exc)) from exc


def _on_check_run(action: str, payload: dict[str, Any]) -> Outcome:
    if action != "requested_action":
        return {"ignored": f"check_run action {action!r}"}
    identifier = _text(_dict(payload.get("requested_action")).get("identifier"))
    if identifier != QUARANTINE_ACTION_ID:
        return {"ignored": f"requested action {identifier!r}"}
    check = _dict(payload.get("check_run"))
    return quarantine_from_check_run(
        repo=_text(_dict(payload.get("repository")).get("full_name")),
        head_sha=_text(check.get("head_sha")),
        github_id=check.get("id") if isinstance(check.get("id"), int) else None,
        login=_text(_dict(payload.get("sender")).get("login")) or "unknown",
    )


def _on_installation(action: str, payload: dict[str, Any]) -> Outcome:
    installation_id = _required_installation_id(payload)
    names = _repository_names(payload.get("repositories"))
    if action == "created":
        return attach_installation_repositories(names=names, installation_id=installation_id)
    if action == "deleted":
        return detach_installation(installation_id=installation_id)
    return {"ignored": f"installation action {action!r}"}


def _on_installation_repositories(action: str, payload: dict[str, Any]) -> Outcome:
    installation_id = _required_installation_id(payload)
    if action == "added":
        return attach_installation_repositories(
            names=_repository_names(payload.get("repositories_added")),
            installation_id=installation_id,
        )
    if action == "removed":
        return detach_installation_repositories(
            names=_repository_names(payload.get("repositories_removed")),
            installation_id=installation_id,
        )
    return {"ignored": f"installation_repositories action {action!r}"}


HANDLERS: dict[str, Handler] = {
    "ping": _on_ping,
    "workflow_run": _on_workflow_run,
    "check_run": _on_check_run,
    "installation": _on_installation,
    "installation_repositories": _on_installation_repositories,
}


# --- payload helpers ----------------------------------------------------------


def _repository_names(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    names = (_text(_dict(item).get("full_name")) for item in items)
    return list(dict.fromkeys(name for name in names if name))


def _installation_id(payload: dict[str, Any]) -> int | None:
    value = _dict(payload.get("installation")).get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _required_installation_id(payload: dict[str, Any]) -> int:
    installation_id = _installation_id(payload)
    if installation_id is None:
        raise BadPayload("installation payload without an installation id")
    return installation_id


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _refuse(
    status: int, reason: str, event: str, delivery_id: str, *, field: str | None = None
) -> JsonResponse:
    logger.warning(
        "webhook %s refused (%s): %s; delivery=%s",
        event[:64] or "-", status, reason, delivery_id[:64] or "-",
    )  # fmt: skip
    answer = {"status": "refused", "error": reason}
    if field:
        answer["field"] = field
    return JsonResponse(answer, status=status)
