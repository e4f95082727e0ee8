"""Where a repository's events go: channels, each subscribed to some kinds of event."""

from __future__ import annotations

from django.db import models

from ingest.models import Repository

EVENT_KINDS = [
    ("became_flaky", "a test became flaky"),
    ("fixed", "a flaky test is fixed"),
    ("quarantine_expires", "a quarantine expires in 3 days"),
    ("quarantine_expired", "a quarantine expired"),
    ("incident", "a new infrastructure incident"),
]


class ChannelKind(models.TextChoices):
    SLACK = "slack", "Slack incoming webhook"
    WEBHOOK = "webhook", "Webhook (JSON signed with HMAC SHA-256)"
    # One issue per flaky test in the repository itself, through its GitHub credentials.
    GITHUB_ISSUE = "github_issue", "GitHub issue per flaky test"


class Channel(models.Model):
    """One destination: a Slack incoming webhook, or any URL that takes signed JSON.

    The URL of a Slack webhook is itself a secret, as is ``secret``: neither is
    ever logged or shown in a list.
    """

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="channels")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    url = models.URLField(max_length=1000, blank=True, help_text="not for GitHub issues")
    secret = models.CharField(
        max_length=255,
        blank=True,
        help_text="webhooks: signs each body (X-FlakeGuard-Signature-256)",
    )
    events = models.JSONField(
        default=list, blank=True, help_text="event kinds to send; empty means every kind"
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()}) for {self.repository}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.kind != ChannelKind.GITHUB_ISSUE and not self.url:
            raise ValidationError({"url": "a Slack or webhook channel needs its URL"})

    def wants(self, event_kind: str) -> bool:
        return self.enabled and (not self.events or event_kind in self.events)
