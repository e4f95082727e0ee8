"""How FlakeGuard follows a repository on GitHub: its settings, polling cursor, webhook deliveries."""

from __future__ import annotations

from django.db import models

from ingest.models import Repository


class ConclusionPolicy(models.TextChoices):
    # success without failures; neutral when every failure is a known flake
    # (quarantined or flaky); failure when any failure is new
    NEUTRAL_WHEN_ALL_FLAKY = "neutral_when_all_flaky", "neutral when every failure is a known flake"
    # success when every failure is a known flake: flakes never block a merge
    SUCCESS_WHEN_ALL_FLAKY = "success_when_all_flaky", "success when every failure is a known flake"
    # FlakeGuard informs, never blocks
    ALWAYS_NEUTRAL = "always_neutral", "always neutral"


class GitHubSettings(models.Model):
    """A repository's GitHub settings and where polling has got to."""

    repository = models.OneToOneField(
        Repository, on_delete=models.CASCADE, primary_key=True, related_name="github"
    )
    artifact_pattern = models.CharField(
        max_length=255,
        default="*",
        help_text="shell-style pattern of the artifact names that hold JUnit reports, "
        'e.g. "junit-*" or "test-results*"',
    )
    polling_enabled = models.BooleanField(default=True)
    poll_interval_seconds = models.PositiveIntegerField(default=300)
    conclusion_policy = models.CharField(
        max_length=32,
        choices=ConclusionPolicy.choices,
        default=ConclusionPolicy.NEUTRAL_WHEN_ALL_FLAKY,
    )
    # Polling state: the ETag of the first page of completed runs (a 304 costs
    # no rate limit) and the newest run creation time seen.
    runs_etag = models.CharField(max_length=255, blank=True)
    runs_seen_until = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_poll_error = models.TextField(blank=True)

    class Meta:
        verbose_name = "GitHub settings"
        verbose_name_plural = "GitHub settings"

    def __str__(self) -> str:
        return f"GitHub settings of {self.repository}"


class WebhookDelivery(models.Model):
    """One webhook delivery, kept so that a redelivery of the same id is ignored."""

    delivery_id = models.CharField(max_length=64, unique=True)
    event = models.CharField(max_length=64)
    action = models.CharField(max_length=64, blank=True)
    repository = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    # what the delivery led to: {"jobs": [...]} or {"ignored": "why"}
    outcome = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["received_at"], name="delivery_received_idx")]

    def __str__(self) -> str:
        return f"{self.event}.{self.action} {self.delivery_id}"
