"""Fan an event out to its repository's channels, one delivery job each, and deliver one."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from jobs.dispatch import enqueue_job
from jobs.errors import PermanentJobError, TransientJobError
from jobs.models import Job, JobKind
from notify.delivery import DeliveryFailed, DeliveryRefused, send
from notify.models import Channel, ChannelKind
from polling.github import GitHubError, RateLimited, Unavailable
from polling.issues import issue_for_event

logger = logging.getLogger(__name__)


def fan_out(job: Job) -> dict[str, Any]:
    """Job body of ``test_event``: one ``deliver_notification`` job per channel that wants it."""
    event = dict(job.payload)
    channels = [
        channel
        for channel in Channel.objects.filter(repository_id=event.get("repository_id"))
        if channel.wants(str(event.get("kind")))
    ]
    for channel in channels:
        # One delivery per event and channel, whatever redelivers the event.
        enqueue_job(
            kind=JobKind.DELIVER_NOTIFICATION,
            dedup_key=f"deliver:{job.pk}:{channel.pk}",
            payload={"channel_id": channel.pk, "event": event},
        )
    return {"channels": len(channels)}


def deliver(job: Job) -> dict[str, Any]:
    """Job body of ``deliver_notification``: send it; a 5xx or a timeout is retried by the runner."""
    channel = Channel.objects.filter(pk=job.payload.get("channel_id")).first()
    if channel is None or not channel.enabled:
        return {"sent": False, "reason": "the channel is gone or disabled"}
    event = job.payload["event"]
    if channel.kind == ChannelKind.GITHUB_ISSUE:
        if event.get("kind") not in ("became_flaky", "fixed"):
            return {"sent": False, "reason": "GitHub issues follow flaky and fixed tests only"}
        try:
            return {"sent": True, **issue_for_event(event)}
        except (RateLimited, Unavailable) as exc:
            raise TransientJobError(f"{channel.name}: {exc}") from exc
        except GitHubError as exc:
            raise PermanentJobError(f"{channel.name}: {exc}") from exc
    try:
        status = send(
            kind=channel.kind,
            url=channel.url,
            secret=channel.secret,
            event=event,
            base_url=settings.FLAKEGUARD_BASE_URL,
        )
    except DeliveryRefused as exc:
        raise PermanentJobError(f"{channel.name}: {exc}") from exc
    except DeliveryFailed as exc:
        raise TransientJobError(f"{channel.name}: {exc}") from exc
    logger.info("notification %s sent to channel %s", job.payload["event"].get("kind"), channel.pk)
    return {"sent": True, "status": status, "channel": channel.pk}
