"""The durable job table: every unit of background work is first a row here.

Celery is only the transport. A job row is written in the same transaction as
whatever caused it, dispatched after commit, claimed with a lease by the worker
that runs it, and finishes SUCCEEDED or, after its last attempt, DEAD (the
dead-letter queue an operator can retry from the admin or the API).
"""

from __future__ import annotations

from django.db import models


class JobKind(models.TextChoices):
    """The names of the work apps hand each other, declared once for every layer.

    A lower app names a higher app's work by its kind (ingest queues
    ``ANALYZE_RUN``, analysis queues ``VERDICTS_CHANGED``) without importing it;
    the app that does the work binds its task with ``jobs.registry.job_task``.
    """

    INGEST_RUN = "ingest_run", "Ingest a run"
    ANALYZE_RUN = "analyze_run", "Analyze a run"
    RECOMPUTE_REPO = "recompute_repo", "Recompute a repository"
    SETTLE_TALLIES = "settle_tallies", "Settle a repository's tallies"
    POLL_REPO = "poll_repo", "Poll a repository"
    BACKFILL_REPO = "backfill_repo", "Backfill a repository"
    # A commit's verdicts changed; the GitHub edge decides whether its check run says so.
    VERDICTS_CHANGED = "verdicts_changed", "Verdicts of a commit changed"
    # Something people may want to hear of (a test became flaky or was fixed,
    # a quarantine expires, an incident): the notifier fans it out to channels.
    TEST_EVENT = "test_event", "A test event to tell people of"
    DELIVER_NOTIFICATION = "deliver_notification", "Deliver a notification to one channel"


class JobState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    DEAD = "dead", "Dead"


class Job(models.Model):
    kind = models.CharField(max_length=32, choices=JobKind.choices)
    # Natural key of the work (e.g. "ingest:acme/shop:812:1"): the same cause
    # delivered twice finds the existing row instead of making a second job.
    dedup_key = models.CharField(max_length=255, unique=True)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.PENDING)
    payload = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    # Where a long job has got to ({"done": …, "total": …, "cursor": …}), saved
    # with each batch so that a new attempt resumes instead of starting over.
    progress = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    next_attempt_at = models.DateTimeField()
    dispatched_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # The request, delivery or command that caused the work; every log line of
    # the job, and of the jobs it queues in turn, carries it.
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table keeps the name it had when the composition root held it.
        db_table = "flakeguard_job"
        indexes = [
            # The sweeper's scan: unfinished jobs by when they are due.
            models.Index(
                fields=["state", "next_attempt_at"],
                name="job_sweep_idx",
                condition=models.Q(state__in=["pending", "running"]),
            ),
            models.Index(fields=["kind", "state"], name="job_kind_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.state}) {self.dedup_key}"
