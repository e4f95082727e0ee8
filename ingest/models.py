"""Stored CI history: repositories, workflow run attempts, test identities, results.

A ``WorkflowRun`` row is one attempt of a GitHub Actions run and doubles as the
idempotency guard of an import: it is inserted first, in the same transaction
as its results, so a run attempt is either wholly stored or not at all.
"""

from __future__ import annotations

from django.db import models

from ingest.junit import FAILED_OUTCOMES, Outcome


class Repository(models.Model):
    full_name = models.CharField(max_length=200, unique=True, help_text="owner/name")
    installation_id = models.BigIntegerField(null=True, blank=True)
    # Scoring reads regressions along this branch; the others are pull requests.
    default_branch = models.CharField(max_length=255, default="main")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "repositories"
        ordering = ["full_name"]

    def __str__(self) -> str:
        return self.full_name


class RunEvent(models.TextChoices):
    PUSH = "push", "push"
    PULL_REQUEST = "pull_request", "pull_request"
    OTHER = "other", "other"


class WorkflowRun(models.Model):
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="runs")
    run_id = models.BigIntegerField()
    run_attempt = models.PositiveIntegerField(default=1)
    sha = models.CharField(max_length=64)
    branch = models.CharField(max_length=255, blank=True)
    event = models.CharField(max_length=40, blank=True)
    workflow = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    ingested_at = models.DateTimeField(auto_now_add=True)
    results_count = models.PositiveIntegerField(default=0)
    files_count = models.PositiveIntegerField(default=0)
    # [{"path": ..., "error": ...}] for every file refused; the rest of the run is stored.
    file_errors = models.JSONField(default=list, blank=True)
    # Set once the run's results are in the test scores (by its analyze job or
    # a full recompute): the guard that applies each run to the scores once.
    analyzed_at = models.DateTimeField(null=True, blank=True)
    # While a large run is applied in batches, each in its own transaction:
    # the highest test pk whose score holds this run. Readers count the run's
    # results for those tests only; null before the first batch and once
    # analyzed_at is set.
    analyzed_upto_test = models.BigIntegerField(null=True, blank=True)
    # {job label: [results, failures]}, counted as the results are written, so
    # that scoring can tell an outage (many tests failing in one job at once)
    # without reading every result. Null for runs stored before it existed.
    job_loads = models.JSONField(null=True, blank=True)
    # {job label: [[fingerprint, failures], ...]}: the most common failure
    # fingerprints of each job with failures (bulk.JOB_FINGERPRINTS_KEPT of
    # them), counted beside job_loads, so that scoring can tell a service
    # outage (many tests failing with one error) without reading the results.
    # Null for runs stored before it existed.
    job_fingerprints = models.JSONField(null=True, blank=True)
    # Set when retention (``analysis.retention``) removed the run's results:
    # the run, its counts and job loads stay, so pages and evidence can say
    # the results are gone rather than show the run as empty.
    results_pruned_at = models.DateTimeField(null=True, blank=True)
    # The lowest and highest ids of the tests this run's import created (null
    # when it created none): its analysis scores the new ones among them.
    new_tests_from = models.BigIntegerField(null=True, blank=True)
    new_tests_upto = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "run_id", "run_attempt"], name="run_attempt_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["repository", "started_at"], name="run_repo_started_idx"),
            models.Index(fields=["repository", "sha"], name="run_repo_sha_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.repository} run {self.run_id} attempt {self.run_attempt}"


class TestCase(models.Model):
    """One stable test identity per repository, normalised file/classname and name."""

    __test__ = False  # not a pytest test class

    # No index of its own: test_identity_unique starts with the repository,
    # and each index is one more btree for a first import to fill. No
    # database-level foreign key either: the store creates tests only for the
    # repository row it holds in the same transaction, and a key would check
    # each of a first import's new tests again at commit.
    repository = models.ForeignKey(
        Repository,
        on_delete=models.CASCADE,
        related_name="tests",
        db_index=False,
        db_constraint=False,
    )
    # sha1 of the normalised identity; names can be long (parametrised tests)
    # and a btree unique index on unbounded text would reject them.
    identity = models.CharField(max_length=40)
    classname = models.TextField(blank=True)
    name = models.TextField()
    file = models.TextField(blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["repository", "identity"], name="test_identity_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.classname}::{self.name}" if self.classname else self.name


class TestResult(models.Model):
    """One test case's result in one run attempt.

    The primary key (test, run, position) is the history of one test in order,
    the hot path of scoring, and the only btree the bulk COPY has to maintain.
    ``position`` numbers the run's results in report order, so a test that
    appears twice in a run (matrix jobs, in-run reruns) keeps both results.
    """

    __test__ = False  # not a pytest test class

    pk = models.CompositePrimaryKey("test_id", "run_id", "position")
    # Results are append-only and written only by the store, which inserts the
    # run and upserts the test identities in the same transaction first. A
    # database-level foreign key would fire a referential-integrity trigger per
    # row and cut COPY throughput several-fold, so the constraint lives in the
    # store, not in PostgreSQL. Both keys are covered by the primary key and
    # result_run_idx; Django's implicit per-column indexes would only slow
    # COPY down.
    run = models.ForeignKey(
        WorkflowRun,
        on_delete=models.CASCADE,
        related_name="results",
        db_index=False,
        db_constraint=False,
    )
    test = models.ForeignKey(
        TestCase,
        on_delete=models.CASCADE,
        related_name="results",
        db_index=False,
        db_constraint=False,
    )
    position = models.PositiveIntegerField()
    outcome = models.CharField(max_length=8, choices=[(o.value, o.value) for o in Outcome])
    duration = models.FloatField(null=True, blank=True, help_text="seconds")
    job = models.CharField(max_length=255, blank=True, help_text="job or matrix label")
    # Surefire in-run reruns: flakyFailure/flakyError (failed, then passed on
    # rerun) and rerunFailure/rerunError (failed on every rerun).
    flaky_reruns = models.PositiveSmallIntegerField(default=0)
    rerun_failures = models.PositiveSmallIntegerField(default=0)
    message = models.TextField(blank=True)
    # Groups failures with the same cause: the failure type and the message
    # with numbers, addresses and quoted values stripped.
    fingerprint = models.CharField(max_length=16, blank=True)

    class Meta:
        indexes = [
            # The few results of a run that are not plain passes, which runs-analyze
            # looks at first; the COPY maintains it only for those rows.
            models.Index(
                fields=["run", "test"],
                condition=~models.Q(outcome="passed") | models.Q(flaky_reruns__gt=0),
                name="result_eventful_idx",
            ),
        ]

    # Results of one run are found through result_run_idx, created by
    # migration 0002: a BRIN index on PostgreSQL, since a run's rows arrive
    # together in one COPY with ever-growing run ids, and it costs next to
    # nothing to maintain; a btree elsewhere.

    def __str__(self) -> str:
        return f"{self.test_id} in run {self.run_id}: {self.outcome}"


def outcome_in_sql(outcomes: frozenset[Outcome] = FAILED_OUTCOMES, column: str = "outcome") -> str:
    """``outcome IN ('error', 'failed')`` for raw SQL over results, from the one vocabulary."""
    return f"{column} IN ({', '.join(repr(str(o)) for o in sorted(outcomes))})"


# --- access: who may see and do what, per repository ----------------------------


class Role(models.TextChoices):
    """A person's role on one repository (staff see and do everything)."""

    VIEWER = "viewer", "viewer"  # reads
    MAINTAINER = "maintainer", "maintainer"  # also quarantines, uploads, changes settings
    ADMIN = "admin", "admin"  # also grants access and manages tokens


class RepositoryMember(models.Model):
    """A grant: this user has this role on this repository."""

    user = models.ForeignKey(
        "auth.User", on_delete=models.CASCADE, related_name="repository_memberships"
    )
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="members")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "repository"], name="member_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.repository}"


class TokenScope(models.TextChoices):
    UPLOAD = "upload", "upload"  # uploads reports and reads the quarantine list
    READ = "read", "read"  # reads
    WRITE = "write", "write"  # reads and quarantines


class ApiToken(models.Model):
    """A bearer token limited to one repository and scope.

    Only a hash of the token is kept: it is shown once, when created. A token
    with a user acts as that user as well, so it can never do more than they
    can.
    """

    name = models.CharField(max_length=100, blank=True)
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="tokens")
    scope = models.CharField(max_length=8, choices=TokenScope.choices)
    user = models.ForeignKey(
        "auth.User", on_delete=models.CASCADE, null=True, blank=True, related_name="api_tokens"
    )
    # sha256 of the whole token, hex: what a presented token is looked up by.
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the token, to tell tokens apart in lists.
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.scope} on {self.repository})"


# --- uploads: reports sent by any CI through the API ----------------------------


class Upload(models.Model):
    """One run attempt's reports as a CI uploaded them, kept until a worker imports them.

    The files live in the database (``UploadPart``), not on the web pod's disk:
    web and workers share no file system, and every pod already reaches the
    database. They are deleted in the transaction that stores their results.
    """

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="uploads")
    run_id = models.BigIntegerField()
    run_attempt = models.PositiveIntegerField(default=1)
    # The ingest job (shared with any other import of the same attempt).
    job = models.ForeignKey("jobs.Job", on_delete=models.SET_NULL, null=True, blank=True)
    files = models.JSONField(default=list, blank=True)  # [{"name": ..., "bytes": ...}]
    created_by = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "run_id", "run_attempt"], name="upload_attempt_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"upload of {self.repository} run {self.run_id} attempt {self.run_attempt}"


class UploadPart(models.Model):
    """One chunk (up to 1 MiB) of one uploaded file."""

    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="parts")
    file_number = models.PositiveIntegerField()
    chunk_number = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["upload", "file_number", "chunk_number"], name="upload_part_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.upload} file {self.file_number} chunk {self.chunk_number}"
