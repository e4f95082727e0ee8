"""Publishing the ``FlakeGuard`` check run of a commit: what failed, rendered, sent to GitHub.

Each analysis of a run enqueues a publish job for its commit (``enqueue_publish``);
the job gathers the failed tests of every analyzed run of that commit, renders
them (``analysis.checks``) and creates or updates the commit's one check run.
The ``CheckRun`` row is the guard: it is locked while GitHub is called, so
publishers of one commit take turns, the first creates the check run and the
later ones update it in place. A write GitHub refuses (on github.com only Apps
may write check runs) is recorded on the row and not retried; an outage or a
spent rate limit is retried by the job runner.
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from django.db import transaction
from django.utils import timezone

from analysis.checks import FailedTest, RenderedCheckRun, render_check_run
from analysis.models import CheckRun, CheckRunState, Quarantine, TestScore
from analysis.scoring import describe_event
from flakeguard.jobs import PermanentJobError, TransientJobError, enqueue_job
from flakeguard.models import Job, JobKind
from ingest.models import Outcome, Repository, TestCase, TestResult, WorkflowRun
from polling.clients import client_for, github_configured
from polling.github import (
    ANNOTATIONS_PER_REQUEST,
    Forbidden,
    GitHubClient,
    GitHubError,
    RateLimited,
    Unavailable,
    iter_chunks,
)
from polling.models import ConclusionPolicy, GitHubSettings

logger = logging.getLogger(__name__)

CHECK_NAME = "FlakeGuard"
# Failures beyond this get no annotation (they are still counted in the
# summary): 500 annotations are 10 requests to GitHub per publish.
MAX_ANNOTATIONS = 500
FAILED = (Outcome.FAILED, Outcome.ERROR)


def enqueue_publish(*, run: WorkflowRun, cause: str = "") -> Job | None:
    """A publish job for the run's commit, when FlakeGuard writes check runs for its repository.

    Call it in the transaction that changed what the commit's check run says:
    the analysis of one of its runs, or a quarantine from its button
    (``cause`` names it; by default the run).
    """
    if not github_configured():
        return None
    if not GitHubSettings.objects.filter(repository_id=run.repository_id).exists():
        return None
    job, _ = enqueue_job(
        kind=JobKind.PUBLISH_CHECK,
        dedup_key=f"publish:{run.repository_id}:{run.sha}:{cause or run.pk}",
        payload={"repository_id": run.repository_id, "head_sha": run.sha},
    )
    return job


def publish_check_job(job: Job) -> dict[str, Any]:
    """Job body of ``publish_check``."""
    try:
        repository_id = int(job.payload["repository_id"])
        head_sha = str(job.payload["head_sha"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentJobError(f"malformed publish payload: {exc!r}") from exc
    repository = Repository.objects.filter(pk=repository_id).first()
    if repository is None:
        raise PermanentJobError(f"repository {repository_id} is gone")
    return publish_check_run(repository=repository, head_sha=head_sha)


def publish_check_run(*, repository: Repository, head_sha: str) -> dict[str, Any]:
    """Create or update the commit's ``FlakeGuard`` check run with its failures as they stand.

    Raises TransientJobError when GitHub is down or the rate limit is spent,
    PermanentJobError when GitHub rejects the request; a refused write is
    recorded as ``refused`` and returns normally.
    """
    client = client_for(repository)
    retry: GitHubError | None = None
    with transaction.atomic():
        check, _ = CheckRun.objects.get_or_create(repository=repository, head_sha=head_sha)
        # Held until commit, GitHub calls included: concurrent publishers of
        # this commit wait here, then find the check run's id and update it.
        check = CheckRun.objects.select_for_update().get(pk=check.pk)
        # Read under the lock, so the last publisher sends the latest failures.
        rendered = render_check_run(
            failed_tests_of_commit(repository=repository, head_sha=head_sha),
            policy=_policy(repository),
            max_annotations=MAX_ANNOTATIONS,
        )
        created = check.github_id is None
        # GitHub keeps every annotation sent to a check run: send each one once.
        already = set(check.annotated)
        fresh = [a for a in rendered.annotations if _annotation_key(a) not in already]
        try:
            _send(client, check, rendered, fresh)
        except Forbidden as exc:
            check.state = CheckRunState.REFUSED
            check.last_error = f"GitHub refused to write the check run: {exc}"
            check.save(update_fields=["github_id", "state", "last_error", "updated_at"])
            logger.warning(
                "%s@%s: check run refused by GitHub: %s", repository.full_name, head_sha[:7], exc
            )
            return {"published": False, "refused": str(exc), "head_sha": head_sha}
        except GitHubError as exc:
            # Keep the check run's id even when a later batch failed, so that
            # the retry updates it instead of creating a second one.
            check.last_error = f"{type(exc).__name__}: {exc}"
            check.save(update_fields=["github_id", "last_error", "updated_at"])
            retry = exc
        else:
            check.annotated = sorted(already | {_annotation_key(a) for a in fresh})
            check.state = CheckRunState.PUBLISHED
            check.conclusion = rendered.conclusion
            check.flaky_tests = rendered.to_quarantine
            check.new_failures = rendered.new_failures
            check.known_flaky_failures = rendered.known_flaky_failures
            check.last_error = ""
            check.published_at = timezone.now()
            check.save()
    if retry is not None:
        if isinstance(retry, RateLimited | Unavailable):
            raise TransientJobError(
                f"check run of {head_sha[:7]} not published: {retry}"
            ) from retry
        raise PermanentJobError(f"check run of {head_sha[:7]} rejected: {retry}") from retry
    logger.info(
        "%s@%s: check run %s %s: %s (%s new, %s known flaky, %s annotations)",
        repository.full_name,
        head_sha[:7],
        check.github_id,
        "created" if created else "updated",
        rendered.conclusion,
        rendered.new_failures,
        rendered.known_flaky_failures,
        len(rendered.annotations),
    )
    return {
        "published": True,
        "created": created,
        "head_sha": head_sha,
        "github_id": check.github_id,
        "conclusion": rendered.conclusion,
        "new_failures": rendered.new_failures,
        "known_flaky_failures": rendered.known_flaky_failures,
        "annotations": len(rendered.annotations),
    }


def _send(
    client: GitHubClient, check: CheckRun, rendered: RenderedCheckRun, annotations: list[dict]
) -> None:
    """The check run with the first batch of annotations, then the others, 50 per request.

    GitHub appends the annotations of each request to those it already has
    (the summary, title, conclusion and actions are replaced), so only the
    annotations not sent before are given here.
    """
    repo = check.repository.full_name
    batches = list(iter_chunks(annotations, ANNOTATIONS_PER_REQUEST)) or [[]]
    body: dict[str, Any] = {
        "name": CHECK_NAME,
        "status": "completed",
        "conclusion": rendered.conclusion,
        "completed_at": timezone.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "output": rendered.output(batches[0]),
        # An empty list takes back a button offered by an earlier publish.
        "actions": rendered.actions,
    }
    if check.github_id is None:
        answer = client.create_check_run(repo, {**body, "head_sha": check.head_sha})
        check.github_id = int(answer["id"])
    else:
        client.update_check_run(repo, check.github_id, body)
    for batch in batches[1:]:
        client.update_check_run(repo, check.github_id, {"output": rendered.output(batch)})


def _annotation_key(annotation: dict[str, Any]) -> str:
    return "{}:{}:{}:{}".format(
        annotation.get("path"),
        annotation.get("start_line"),
        annotation.get("annotation_level"),
        annotation.get("title"),
    )


def _policy(repository: Repository) -> str:
    policy = (
        GitHubSettings.objects.filter(repository=repository)
        .values_list("conclusion_policy", flat=True)
        .first()
    )
    return policy or ConclusionPolicy.NEUTRAL_WHEN_ALL_FLAKY


# --- selectors ----------------------------------------------------------------


def failed_tests_of_commit(*, repository: Repository, head_sha: str) -> list[FailedTest]:
    """The tests that failed in the analyzed runs of this commit, with their scores.

    A test failed in the commit when it failed (or errored) in an analyzed run
    of it and did not pass in a later attempt of the same run: a re-run that
    went green takes the failure back, a failure and a pass in two different
    workflows (or two jobs of one attempt) do not cancel out. Runs not analyzed
    yet are left out; their own publish job brings them in.
    """
    attempts = {
        pk: (run_id, attempt)
        for pk, run_id, attempt in WorkflowRun.objects.filter(
            repository=repository, sha=head_sha, analyzed_at__isnull=False
        ).values_list("pk", "run_id", "run_attempt")
    }
    if not attempts:
        return []
    failed: dict[int, dict[str, Any]] = {}
    for test_pk, run_pk, job, message in (
        TestResult.objects.filter(run_id__in=list(attempts), outcome__in=FAILED)
        .order_by("run_id", "position")
        .values_list("test_id", "run_id", "job", "message")
    ):
        entry = failed.setdefault(test_pk, {"runs": {}, "message": ""})
        entry["runs"].setdefault(run_pk, []).append(job)
        entry["message"] = entry["message"] or message
    if not failed:
        return []
    # Latest passing attempt of each (test, run id).
    passed_at: dict[tuple[int, int], int] = {}
    for test_pk, run_pk in TestResult.objects.filter(
        run_id__in=list(attempts), outcome=Outcome.PASSED, test_id__in=list(failed)
    ).values_list("test_id", "run_id"):
        run_id, attempt = attempts[run_pk]
        key = (test_pk, run_id)
        passed_at[key] = max(passed_at.get(key, 0), attempt)
    jobs_of: dict[int, set[str]] = {}
    for test_pk, entry in failed.items():
        for run_pk, jobs in entry["runs"].items():
            run_id, attempt = attempts[run_pk]
            if passed_at.get((test_pk, run_id), 0) > attempt:
                continue  # a later attempt of this run passed it
            jobs_of.setdefault(test_pk, set()).update(job for job in jobs if job)
    tests = TestCase.objects.in_bulk(list(jobs_of))
    scores = {score.test_id: score for score in TestScore.objects.filter(test_id__in=list(jobs_of))}
    quarantined = set(
        Quarantine.objects.filter(test_id__in=list(jobs_of)).values_list("test_id", flat=True)
    )
    failures = []
    for test_pk, jobs in jobs_of.items():
        test, score = tests[test_pk], scores.get(test_pk)
        failures.append(
            FailedTest(
                test_id=test_pk,
                name=test.name,
                classname=test.classname,
                file=test.file,
                message=failed[test_pk]["message"],
                jobs=tuple(sorted(jobs)),
                verdict=score.verdict if score else "",
                score=score.score if score else 0.0,
                quarantined=test_pk in quarantined,
                evidence=tuple(
                    describe_event(event) for event in (score.evidence if score else [])
                ),
            )
        )
    return failures
