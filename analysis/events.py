"""Changes of verdict people act on, and the policy that quarantines and releases by itself.

When verdicts are saved, a test that became ``flaky`` and a flaky test that is
``stable`` again are announced through the job table (``test_event`` jobs,
which the notifier fans out to a repository's channels); analysis never calls
a channel itself. Where the repository's policy says so, a test that became
flaky is quarantined (owner from its code owners, the default expiry), and a
test FlakeGuard quarantined is released after ``release_passes`` clean passes
in a row. A person's quarantine is never released by the policy: it lasts
until its expiry or until a person releases it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from django.conf import settings

from analysis.models import Quarantine, RepositoryPolicy, TestOwner, TestScore
from analysis.scoring import TestStatus, Verdict, describe_event
from ingest.models import TestCase
from jobs.dispatch import enqueue_job
from jobs.models import Job, JobKind

logger = logging.getLogger(__name__)

AUTOMATIC = "flakeguard"  # created_by / actor of what the policy does


class EventKind(StrEnum):
    BECAME_FLAKY = "became_flaky"
    FIXED = "fixed"
    QUARANTINE_EXPIRES = "quarantine_expires"
    QUARANTINE_EXPIRED = "quarantine_expired"
    INCIDENT = "incident"


def announce_event(*, repository_id: int, kind: str, key: str, payload: dict[str, Any]) -> Job:
    """Enqueue, in the caller's transaction, one event; the same ``key`` again is one job."""
    job, _ = enqueue_job(
        kind=JobKind.TEST_EVENT,
        dedup_key=f"event:{repository_id}:{kind}:{key}",
        payload={"repository_id": repository_id, "kind": kind, **payload},
    )
    return job


def test_payload(test: TestCase, verdict: Verdict | TestScore, owners: Sequence[str] = ()) -> dict:
    """What a notification says of a test: where to look, how bad, why, whose."""
    status = verdict.status if isinstance(verdict, Verdict) else verdict.verdict
    evidence = verdict.evidence or []
    return {
        "test_id": test.pk,
        "test": str(test),
        "file": test.file,
        "repo": test.repository.full_name,
        "path": f"/repos/{test.repository.full_name}/tests/{test.pk}/",
        "status": status,
        "score": round(float(verdict.score), 3),
        "evidence": [describe_event(event) for event in evidence[:3]],
        "owners": list(owners),
    }


test_payload.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def note_changes(
    repository_id: int, verdicts: Sequence[tuple[int, Verdict]], before: dict[int, str]
) -> None:
    """Announce the tests that became flaky or were fixed, and apply the repository's policy.

    ``before`` maps the tests that were flaky before these verdicts to ``flaky``.
    """
    was_flaky = {pk for pk, status in before.items() if status == TestStatus.FLAKY}
    became = [(pk, v) for pk, v in verdicts if v.status == TestStatus.FLAKY and pk not in was_flaky]
    fixed = [(pk, v) for pk, v in verdicts if pk in was_flaky and v.status == TestStatus.STABLE]
    policy = RepositoryPolicy.objects.filter(repository_id=repository_id).first()
    quarantined = set(
        Quarantine.objects.filter(test_id__in=[pk for pk, _ in verdicts]).values_list(
            "test_id", flat=True
        )
    )
    changed = [pk for pk, _ in [*became, *fixed]]
    tests = TestCase.objects.select_related("repository").in_bulk(changed)
    owners: dict[int, list[str]] = {}
    for test_pk, owner in TestOwner.objects.filter(test_id__in=changed).values_list(
        "test_id", "owner"
    ):
        owners.setdefault(test_pk, []).append(owner)
    for test_pk, verdict in became:
        payload = test_payload(tests[test_pk], verdict, owners.get(test_pk, []))
        if policy and policy.auto_quarantine and test_pk not in quarantined:
            _quarantine(tests[test_pk], verdict, payload["owners"])
            payload["quarantined"] = True
        announce_event(
            repository_id=repository_id,
            kind=EventKind.BECAME_FLAKY,
            key=f"{test_pk}:{verdict.flaky_since}",
            payload=payload,
        )
    for test_pk, verdict in fixed:
        announce_event(
            repository_id=repository_id,
            kind=EventKind.FIXED,
            key=f"{test_pk}:{verdict.latest_result_at}",
            payload=test_payload(tests[test_pk], verdict, owners.get(test_pk, [])),
        )
    if policy and policy.auto_quarantine:
        _release_the_recovered(verdicts, policy)


def _quarantine(test: TestCase, verdict: Verdict, owners: Sequence[str]) -> None:
    from analysis.quarantines import quarantine_tests

    quarantine_tests(
        tests=[test],
        created_by=AUTOMATIC,
        reason=f"automatically: became flaky (score {verdict.score:.2f})",
        owner=", ".join(owners),
    )


def _release_the_recovered(
    verdicts: Sequence[tuple[int, Verdict]], policy: RepositoryPolicy
) -> None:
    """Release what the policy quarantined once the test passed cleanly long enough."""
    from analysis.quarantines import release_tests

    needed = policy.release_passes or settings.FLAKEGUARD_RELEASE_PASSES
    # Clean passes in a row, whatever the score still says: it decays over a
    # hundred results or more, while 30 passes in a row are rare for a real flake.
    recovered = [pk for pk, v in verdicts if v.clean_since >= needed]
    if not recovered:
        return
    ours = Quarantine.objects.filter(test_id__in=recovered, created_by=AUTOMATIC)
    tests = list(TestCase.objects.filter(pk__in=ours.values("test_id")))
    if tests:
        release_tests(tests=tests, actor=AUTOMATIC, reason=f"{needed} clean passes in a row")
        logger.info("%s tests released after %s clean passes", len(tests), needed)
