"""What analysis keeps: each test's verdict, infrastructure incidents, quarantines, scoring settings.

``TestScore`` and ``Incident`` are derived data, rebuilt by a recompute at any
time; ``Quarantine`` and ``ScoringConfig`` are decisions people make and are
never recomputed.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

# TestStatus is the scoring core's vocabulary, imported here (and so importable
# from here) rather than defined twice.
from analysis.scoring import ScoringSettings, TestStatus
from ingest.models import Repository, TestCase, WorkflowRun


class TestScore(models.Model):
    """The current verdict on one test, with the components and evidence behind it."""

    __test__ = False  # not a pytest test class

    # Scores are written only by the analysis, from the tests of stored results.
    # Database-level foreign keys would check every row of a first run's bulk
    # insert again at commit (two lookups a score, seconds for 100,000), so, as
    # for results, the keys are kept by the writer; deletes cascade in Django.
    test = models.OneToOneField(
        TestCase,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="score",
        db_constraint=False,
    )
    # No index of its own: the indexes below lead with it. A plain one would
    # be what the planner picks for a repository it has no statistics of
    # yet, over the partial index runs-analyze needs.
    repository = models.ForeignKey(
        Repository,
        on_delete=models.CASCADE,
        related_name="scores",
        db_index=False,
        db_constraint=False,
    )
    # What the evidence says; "quarantined" is a person's decision and lives
    # in Quarantine, so a recompute never overwrites it.
    verdict = models.CharField(max_length=16, choices=[(s.value, s.value) for s in TestStatus])
    score = models.FloatField(default=0.0)
    results = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    # Kept so that clean results can update the score without the history.
    evidence_weight = models.FloatField(default=0.0)
    half_life = models.FloatField(default=0.0)
    clean_since = models.PositiveIntegerField(default=0)
    pending = models.BooleanField(default=False)
    latest_result_at = models.DateTimeField(null=True, blank=True)
    flaky_since = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    components = models.JSONField(default=dict, blank=True)
    evidence = models.JSONField(default=list, blank=True)
    # A stable test with no evidence (``analysis.scoring.is_at_rest``): a run in
    # which it only passed changes nothing but its count of results and when it
    # last ran, so the run is not written into this row but recorded as a
    # ``PendingTally`` (``analysis.tallies``), counted in by readers and settled
    # in bulk later.
    at_rest = models.BooleanField(default=False)
    # The last PendingTally of the repository this row already counts.
    tallied_through = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # runs-analyze: the tests of a run that may need more than a tally.
            models.Index(
                fields=["repository", "test"],
                condition=models.Q(at_rest=False),
                name="score_busy_idx",
            ),
            # runs-analyze: tests at rest that failed after a backfilled run began.
            models.Index(
                fields=["last_failure_at"],
                condition=models.Q(last_failure_at__isnull=False),
                name="score_last_failure_idx",
            ),
            # The flaky report and the dashboard: a repository's tests by verdict, worst first.
            models.Index(fields=["repository", "verdict", "-score"], name="score_report_idx"),
            # The repository page and /api/v1/tests/: a repository's tests worst first, a
            # page at a time, read in index order rather than sorted whole.
            models.Index(
                fields=["repository", "-score", "-failures", "test"], name="score_rank_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.test}: {self.verdict} ({self.score:.2f})"


class PendingTally(models.Model):
    """One batch of a run applied to the tests at rest among (after_test, upto_test].

    Those tests only passed in the run, so their scores were left as they
    were: their results and last run are this row's results of the run for
    every score whose ``tallied_through`` is below its id
    (``analysis.tallies``). Removed once settled into the scores.
    """

    id = models.BigAutoField(primary_key=True)
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="+")
    after_test = models.BigIntegerField()
    upto_test = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["repository", "id"], name="tally_repo_idx")]

    def __str__(self) -> str:
        return f"tally {self.pk}: run {self.run_id}, tests ({self.after_test}, {self.upto_test}]"


class Quarantine(models.Model):
    """A person's decision that a test's failures should not fail the build, until it expires."""

    test = models.OneToOneField(
        TestCase, on_delete=models.CASCADE, primary_key=True, related_name="quarantine"
    )
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="quarantines")
    reason = models.TextField(blank=True)
    owner = models.CharField(
        max_length=255, blank=True, help_text="the person or team fixing the test"
    )
    created_by = models.CharField(max_length=255, blank=True, help_text="user or GitHub login")
    created_at = models.DateTimeField(auto_now_add=True)
    # Lifted by analysis.quarantines.lift_expired (every minute); CI's list
    # leaves expired ones out at once.
    expires_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["repository", "test"], name="quarantine_repo_idx"),
            models.Index(fields=["expires_at"], name="quarantine_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.test} quarantined by {self.created_by or 'unknown'}"


class QuarantineAction(models.TextChoices):
    QUARANTINED = "quarantined", "quarantined"
    CHANGED = "changed", "changed"
    RELEASED = "released", "released"
    EXPIRED = "expired", "expired"


class QuarantineEvent(models.Model):
    """The audit trail of quarantines: who did what to which test, when and why."""

    test = models.ForeignKey(TestCase, on_delete=models.CASCADE, related_name="quarantine_events")
    repository = models.ForeignKey(
        Repository, on_delete=models.CASCADE, related_name="quarantine_events"
    )
    action = models.CharField(max_length=16, choices=QuarantineAction.choices)
    actor = models.CharField(max_length=255, blank=True, help_text="user, token or GitHub login")
    reason = models.TextField(blank=True)
    owner = models.CharField(max_length=255, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["test", "-at"], name="quarantine_event_test_idx")]

    def __str__(self) -> str:
        return f"{self.test} {self.action} by {self.actor or 'unknown'} at {self.at:%Y-%m-%d %H:%M}"


class ScoringConfig(models.Model):
    """A repository's overrides of the scoring defaults (see ``ScoringSettings``)."""

    repository = models.OneToOneField(
        Repository, on_delete=models.CASCADE, primary_key=True, related_name="scoring"
    )
    overrides = models.JSONField(
        default=dict,
        blank=True,
        help_text='Only the settings that differ from the defaults, e.g. {"isolated_weight": 0.4}.',
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"scoring of {self.repository}"

    def clean(self) -> None:
        try:
            ScoringSettings.from_json(self.overrides)
        except ValueError as exc:
            raise ValidationError({"overrides": str(exc)}) from exc

    def settings(self) -> ScoringSettings:
        return ScoringSettings.from_json(self.overrides)


class Incident(models.Model):
    """A job attempt whose failures were put down to infrastructure (``analysis.scoring.incidents``).

    Derived data, like ``TestScore``: rewritten by ``analysis.incidents.record_incidents``
    from the job loads whenever the run is analyzed again, never edited.
    """

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="incidents")
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="incidents")
    # GitHub's run id (``run_id`` is the foreign key's column; the API names this run_id).
    github_run_id = models.BigIntegerField(help_text="GitHub's run id")
    run_attempt = models.PositiveIntegerField()
    job = models.CharField(max_length=255)
    started_at = models.DateTimeField()
    tests_failed = models.PositiveIntegerField()
    tests_in_job = models.PositiveIntegerField()
    # The job's usual (median) failures in one attempt when it was recorded.
    usual_failures = models.FloatField(default=0.0)
    # co-failure | shared fingerprint | co-failure, shared fingerprint
    rule = models.CharField(max_length=40)
    # [{"fingerprint": ..., "tests": n, "marks_incident": bool}], most common first:
    # marks_incident when the fingerprint alone makes the incident (shared by many tests).
    fingerprints = models.JSONField(default=list, blank=True)
    recorded_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "job"], name="incident_run_job_unique"),
        ]
        indexes = [
            models.Index(fields=["repository", "-started_at"], name="incident_repo_started_idx"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.repository} run {self.github_run_id} attempt {self.run_attempt} {self.job}: "
            f"{self.tests_failed} of {self.tests_in_job} failed ({self.rule})"
        )


class RepositorySnapshot(models.Model):
    """One day of a repository in numbers: what the dashboard's trends are drawn from.

    Taken every hour for the current day (``analysis.snapshots``), so trends
    outlive the results they were counted from.
    """

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="snapshots")
    day = models.DateField()
    tests = models.PositiveIntegerField(default=0)
    flaky = models.PositiveIntegerField(default=0)
    failing = models.PositiveIntegerField(default=0)
    quarantined = models.PositiveIntegerField(default=0)
    # Seconds of CI spent that day on attempts a re-run then passed, and on
    # jobs failed by flaky tests alone.
    ci_seconds_lost = models.FloatField(default=0.0)
    taken_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["repository", "day"], name="snapshot_day_unique"),
        ]
        ordering = ["repository", "day"]

    def __str__(self) -> str:
        return f"{self.repository} on {self.day}: {self.flaky} flaky"


class RepositoryPolicy(models.Model):
    """What FlakeGuard may do by itself in a repository (nothing, by default)."""

    repository = models.OneToOneField(
        Repository, on_delete=models.CASCADE, primary_key=True, related_name="policy"
    )
    auto_quarantine = models.BooleanField(
        default=False,
        help_text="Quarantine tests that become flaky (never failing ones), and release them "
        "after enough clean passes.",
    )
    release_passes = models.PositiveIntegerField(
        null=True, blank=True, help_text="clean passes in a row (default FLAKEGUARD_RELEASE_PASSES)"
    )

    class Meta:
        verbose_name_plural = "repository policies"

    def __str__(self) -> str:
        return f"{self.repository}: auto-quarantine {'on' if self.auto_quarantine else 'off'}"


class OwnerSource(models.TextChoices):
    CODEOWNERS = "codeowners", "CODEOWNERS"
    PERSON = "person", "set by a person"


class TestOwner(models.Model):
    """One owner of one test: from the repository's CODEOWNERS, or set by a person (who wins)."""

    __test__ = False  # not a pytest test class

    test = models.ForeignKey(TestCase, on_delete=models.CASCADE, related_name="owners")
    owner = models.CharField(max_length=255, help_text="@user, @org/team or an email")
    source = models.CharField(max_length=16, choices=OwnerSource.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["test", "owner"], name="test_owner_unique"),
        ]
        indexes = [models.Index(fields=["owner", "test"], name="test_owner_idx")]

    def __str__(self) -> str:
        return f"{self.owner} owns {self.test}"
