"""What the GitHub edge keeps: how a repository is followed, its runs, artifacts and check runs.

Settings and the polling cursor per repository, runs seen in progress (followed
until they complete), each artifact and what became of it, each commit's one
``FlakeGuard`` check run, and webhook deliveries (so a redelivery is ignored).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

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
    # Check runs are posted for commits whose runs complete from this moment
    # on; the history a backfill brings in is scored but not announced.
    followed_since = models.DateTimeField(default=timezone.now)

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


class FollowedRun(models.Model):
    """A workflow run seen before it completed, asked after until it does, whatever its age.

    Polling lists a window of recent runs; a nightly suite, or a run waiting
    for an approval, can complete after it has left that window.
    """

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="followed")
    run_id = models.BigIntegerField()
    # The attempt seen going: once its ingest job exists (a webhook announced
    # its completion) the run needs no more asking.
    run_attempt = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=32, blank=True, help_text="as GitHub last said")
    # Of the run's last answer: asking again with If-None-Match costs no rate limit.
    etag = models.CharField(max_length=255, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["repository", "run_id"], name="followed_run_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.repository} run {self.run_id} ({self.status or 'not completed'})"


class ArtifactState(models.TextChoices):
    PENDING = "pending", "pending"
    INGESTED = "ingested", "ingested"
    EXPIRED = "expired", "expired (410 Gone)"
    TOO_LARGE = "too_large", "too large"
    FAILED = "failed", "failed"


class Artifact(models.Model):
    """A GitHub Actions artifact of a run, and what became of it (downloaded once at most)."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="artifacts")
    artifact_id = models.BigIntegerField()
    run_id = models.BigIntegerField()
    # Artifacts carry no attempt number: the attempt is inferred from the
    # artifact's creation time against each attempt's start.
    run_attempt = models.PositiveIntegerField()
    name = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(
        max_length=16, choices=ArtifactState.choices, default=ArtifactState.PENDING
    )
    error = models.TextField(blank=True)
    recorded_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "ingest_artifact"  # the table kept its name when the model moved here
        constraints = [
            models.UniqueConstraint(fields=["repository", "artifact_id"], name="artifact_unique"),
        ]
        indexes = [
            models.Index(fields=["repository", "run_id"], name="artifact_run_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.repository} artifact {self.artifact_id} ({self.name}): {self.state}"


class CheckRunState(models.TextChoices):
    PENDING = "pending", "pending"
    PUBLISHED = "published", "published"
    # GitHub refused the write (on github.com only Apps may write check runs):
    # recorded with its reason and not retried.
    REFUSED = "refused", "refused by GitHub"


class CheckRun(models.Model):
    """The one ``FlakeGuard`` check run of a commit, created once and updated in place."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="check_runs")
    head_sha = models.CharField(max_length=64)
    github_id = models.BigIntegerField(null=True, blank=True, help_text="GitHub's check run id")
    state = models.CharField(
        max_length=16, choices=CheckRunState.choices, default=CheckRunState.PENDING
    )
    conclusion = models.CharField(max_length=32, blank=True)
    # Test pks of the known flaky failures shown, which the "Quarantine" button quarantines.
    flaky_tests = models.JSONField(default=list, blank=True)
    # Keys of the annotations already sent: GitHub keeps each one it receives.
    annotated = models.JSONField(default=list, blank=True)
    new_failures = models.PositiveIntegerField(default=0)
    known_flaky_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "analysis_checkrun"  # the table kept its name when the model moved here
        constraints = [
            models.UniqueConstraint(fields=["repository", "head_sha"], name="check_run_unique"),
        ]

    def __str__(self) -> str:
        return f"FlakeGuard check of {self.repository}@{self.head_sha[:7]}: {self.state}"


class CodeOwnersSource(models.TextChoices):
    GITHUB = "github", "read from GitHub"
    UPLOAD = "upload", "uploaded through the API"


class CodeOwnersFile(models.Model):
    """The repository's CODEOWNERS as last read (from GitHub, or uploaded by another CI)."""

    repository = models.OneToOneField(
        Repository, on_delete=models.CASCADE, primary_key=True, related_name="codeowners"
    )
    path = models.CharField(max_length=64, blank=True, help_text="where GitHub had it")
    content = models.TextField(blank=True)
    etag = models.CharField(max_length=200, blank=True)  # for the next conditional request
    source = models.CharField(max_length=16, choices=CodeOwnersSource.choices)
    errors = models.JSONField(default=list, blank=True)  # [{"line": n, "message": ...}]
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"CODEOWNERS of {self.repository} ({self.get_source_display()})"


class FlakyTestIssue(models.Model):
    """The GitHub issue opened for a test when it became flaky, closed when it is fixed."""

    test = models.OneToOneField(
        "ingest.TestCase", on_delete=models.CASCADE, primary_key=True, related_name="github_issue"
    )
    repository = models.ForeignKey(
        Repository, on_delete=models.CASCADE, related_name="flaky_issues"
    )
    number = models.PositiveIntegerField()
    url = models.URLField(max_length=500, blank=True)
    open = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"issue #{self.number} for {self.test_id} ({'open' if self.open else 'closed'})"
