"""Publishing the ``FlakeGuard`` check run of a commit: what failed, rendered, sent to GitHub.

Analysis announces that a commit's verdicts changed (a ``verdicts_changed``
job); this edge decides whether GitHub should hear of it (credentials set, the
repository followed, the commit's runs completed since it was followed, not
weeks-old history a backfill brought in), then gathers the failed tests of
every analyzed run of that commit, renders them (``polling.checks``) and
creates or updates the commit's one check run.
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
from django.db.models import Q
from django.utils import timezone

from analysis.announcements import announce_verdicts_changed
from analysis.models import TestScore
from analysis.quarantines import active_quarantines, quarantine_tests
from analysis.scoring import describe_event
from ingest.junit import FAILED_OUTCOMES, Outcome
from ingest.models import Repository, TestCase, TestResult, WorkflowRun
from jobs.errors import PermanentJobError, TransientJobError
from jobs.models import Job
from polling.checks import FailedTest, RenderedCheckRun, render_check_run
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
from polling.models import CheckRun, CheckRunState, ConclusionPolicy, GitHubSettings

logger = logging.getLogger(__name__)

CHECK_NAME = "FlakeGuard"
# Failures beyond this get no annotation (they are still counted in the
# summary): 500 annotations are 10 requests to GitHub per publish.
MAX_ANNOTATIONS = 500


def publish_for_verdicts_job(job: Job) -> dict[str, Any]:
    """Job body of ``verdicts_changed``: publish the commit's check run if GitHub should hear of it."""
    try:
        repository_id = int(job.payload["repository_id"])
        head_sha = str(job.payload["head_sha"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentJobError(f"malformed verdicts payload: {exc!r}") from exc
    repository = Repository.objects.filter(pk=repository_id).first()
    if repository is None:
        raise PermanentJobError(f"repository {repository_id} is gone")
    reason = _why_not_published(repository, head_sha)
    if reason:
        logger.debug("%s@%s: no check run: %s", repository.full_name, head_sha[:7], reason)
        return {"published": False, "head_sha": head_sha, "reason": reason}
    return publish_check_run(repository=repository, head_sha=head_sha)


def _why_not_published(repository: Repository, head_sha: str) -> str:
    """Why GitHub should not hear of this commit's verdicts; "" when it should."""
    if not github_configured():
        return "no GitHub credentials are configured"
    github = GitHubSettings.objects.filter(repository=repository).first()
    if github is None:
        return "the repository is not followed on GitHub"
    runs = WorkflowRun.objects.filter(repository=repository, sha=head_sha)
    if (
        runs.filter(results_pruned_at__isnull=False).exists()
        and not runs.filter(results_pruned_at__isnull=True).exists()
    ):
        # Retention removed the commit's results: published again, its check
        # run would claim that nothing failed.
        return "the results of its runs have been removed (retention)"
    if CheckRun.objects.filter(repository=repository, head_sha=head_sha).exists():
        return ""  # already published: keep it true
    # A commit of the history a backfill brought in: nobody looks at it any
    # more, and its check runs would spend the rate budget of fresh ones.
    recent = WorkflowRun.objects.filter(repository=repository, sha=head_sha).filter(
        Q(completed_at__gte=github.followed_since)
        | Q(completed_at__isnull=True, started_at__gte=github.followed_since)
    )
    if not recent.exists():
        return "its runs completed before the repository was followed"
    return ""


def publish_check_run(*, repository: Repository, head_sha: str) -> dict[str, Any]:
    """Create or update the commit's ``FlakeGuard`` check run with its failures as they stand.

    Raises TransientJobError when GitHub is down or the rate limit is spent,
    PermanentJobError when GitHub rejects the request; a refused write is
    recorded as ``refused`` and returns normally.
    """
    client = client_for(installation_id=repository.installation_id)
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
        TestResult.objects.filter(run_id__in=list(attempts), outcome__in=FAILED_OUTCOMES)
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
        active_quarantines().filter(test_id__in=list(jobs_of)).values_list("test_id", flat=True)
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


# --- the check run's button -------------------------------------------------------


def quarantine_from_check_run(
    *, repo: str, head_sha: str, github_id: int | None, login: str
) -> dict[str, Any]:
    """Quarantine the flakes a check run listed, as its "Quarantine flakes" button asked.

    The commit's verdicts then changed: the check run is republished, showing
    them as quarantined and taking its button back.
    """
    check_run = _find_check_run(repo=repo, head_sha=head_sha, github_id=github_id)
    if check_run is None:
        return {"ignored": "unknown check run"}
    pks = [pk for pk in check_run.flaky_tests if isinstance(pk, int)]
    tests = list(TestCase.objects.filter(repository_id=check_run.repository_id, pk__in=pks))
    quarantine_tests(
        tests=tests,
        created_by=f"github:{login}",
        reason=f"quarantined from the FlakeGuard check run of {check_run.head_sha[:7]}",
    )
    announce_verdicts_changed(
        repository_id=check_run.repository_id,
        head_sha=check_run.head_sha,
        cause=f"quarantine:{check_run.pk}:{login}:{len(tests)}",
    )
    return {"check_run": check_run.pk, "quarantined": sorted(test.pk for test in tests)}


def _find_check_run(*, repo: str, head_sha: str, github_id: int | None) -> CheckRun | None:
    """Our check run by GitHub's id, else by (repository, commit)."""
    if github_id is not None:
        match = Q(github_id=github_id)
        if repo and head_sha:
            match |= Q(repository__full_name=repo, head_sha=head_sha)
    elif repo and head_sha:
        match = Q(repository__full_name=repo, head_sha=head_sha)
    else:
        return None
    candidates = list(CheckRun.objects.filter(match)[:2])
    by_id = [c for c in candidates if github_id is not None and c.github_id == github_id]
    return (by_id or candidates or [None])[0]
