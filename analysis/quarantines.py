"""Quarantines: people's decision that a test's failures should not fail the build.

Scores never overwrite them; the check run shows quarantined flakes as such
and takes its "Quarantine flakes" button back once none is left to quarantine.
A quarantine expires (``FLAKEGUARD_QUARANTINE_DAYS`` after it was made, unless
given another date) so that a quarantined test is not forgotten; every change
is written to the audit trail (``QuarantineEvent``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from analysis.models import Quarantine, QuarantineAction, QuarantineEvent
from ingest.models import Repository, TestCase

logger = logging.getLogger(__name__)


def default_expiry() -> datetime:
    return timezone.now() + timedelta(days=settings.FLAKEGUARD_QUARANTINE_DAYS)


def active_quarantines(repository: Repository | None = None) -> QuerySet[Quarantine]:
    """Quarantines in force now: expired ones are left out even before they are lifted."""
    queryset = Quarantine.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
    )
    return queryset if repository is None else queryset.filter(repository=repository)


def quarantine_tests(
    *,
    tests: list[TestCase],
    created_by: str,
    reason: str = "",
    owner: str = "",
    expires_at: datetime | None = None,
) -> list[Quarantine]:
    """Quarantine these tests (already quarantined ones keep their first record)."""
    made = []
    expires_at = expires_at or default_expiry()
    with transaction.atomic():
        for test in tests:
            quarantine, created = Quarantine.objects.get_or_create(
                test=test,
                defaults={
                    "repository_id": test.repository_id,
                    "created_by": created_by,
                    "reason": reason,
                    "owner": owner,
                    "expires_at": expires_at,
                },
            )
            if created:
                _audit(quarantine, QuarantineAction.QUARANTINED, actor=created_by)
                logger.info("%s quarantined by %s", test, created_by or "unknown")
            made.append(quarantine)
    return made


def change_quarantine(quarantine: Quarantine, *, actor: str, **changes: object) -> Quarantine:
    """Change a quarantine's reason, owner or expiry, with an audit event."""
    allowed = {"reason", "owner", "expires_at"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))} of a quarantine")
    with transaction.atomic():
        for field, value in changes.items():
            setattr(quarantine, field, value)
        quarantine.save()
        _audit(quarantine, QuarantineAction.CHANGED, actor=actor)
    return quarantine


def release_tests(*, tests: list[TestCase], actor: str = "", reason: str = "") -> int:
    """Take these tests out of quarantine; returns how many were in it."""
    with transaction.atomic():
        quarantines = list(Quarantine.objects.select_for_update().filter(test__in=tests))
        for quarantine in quarantines:
            _audit(quarantine, QuarantineAction.RELEASED, actor=actor, reason=reason)
        Quarantine.objects.filter(pk__in=[q.pk for q in quarantines]).delete()
    return len(quarantines)


def lift_expired() -> int:
    """Lift every quarantine whose expiry has passed (Beat, every minute)."""
    with transaction.atomic():
        expired = list(
            Quarantine.objects.select_for_update(skip_locked=True).filter(
                expires_at__lte=timezone.now()
            )
        )
        for quarantine in expired:
            _audit(quarantine, QuarantineAction.EXPIRED, actor="flakeguard")
            _announce(quarantine, "quarantine_expired")
        Quarantine.objects.filter(pk__in=[q.pk for q in expired]).delete()
    if expired:
        logger.info("%s expired quarantines lifted", len(expired))
    return len(expired)


def _audit(quarantine: Quarantine, action: str, *, actor: str, reason: str | None = None) -> None:
    QuarantineEvent.objects.create(
        test_id=quarantine.test_id,
        repository_id=quarantine.repository_id,
        action=action,
        actor=actor,
        reason=reason or quarantine.reason,
        owner=quarantine.owner,
        expires_at=quarantine.expires_at,
    )


def announce_expiring(*, within: timedelta = timedelta(days=3)) -> int:
    """Tell the channels of each quarantine that expires within ``within`` (Beat, hourly);
    once per quarantine and expiry date."""
    soon = active_quarantines().filter(expires_at__lte=timezone.now() + within)
    count = 0
    for quarantine in soon.select_related("test", "repository"):
        _announce(quarantine, "quarantine_expires")
        count += 1
    return count


def _announce(quarantine: Quarantine, kind: str) -> None:
    from analysis.events import announce_event

    test = quarantine.test
    expires = quarantine.expires_at.isoformat() if quarantine.expires_at else None
    announce_event(
        repository_id=quarantine.repository_id,
        kind=kind,
        key=f"{quarantine.test_id}:{expires}",
        payload={
            "test_id": quarantine.test_id,
            "test": str(test),
            "repo": quarantine.repository.full_name,
            "path": f"/repos/{quarantine.repository.full_name}/tests/{quarantine.test_id}/",
            "expires_at": expires,
            "reason": quarantine.reason,
            "owners": [o.strip() for o in quarantine.owner.split(",") if o.strip()],
        },
    )
