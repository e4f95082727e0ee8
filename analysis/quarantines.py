"""Quarantines: people's decision that a test's failures should not fail the build.

Scores never overwrite them; the check run shows quarantined flakes as such
and takes its "Quarantine flakes" button back once none is left to quarantine.
"""

from __future__ import annotations

import logging

from django.db import transaction

from analysis.models import Quarantine
from ingest.models import TestCase

logger = logging.getLogger(__name__)


def quarantine_tests(
    *, tests: list[TestCase], created_by: str, reason: str = ""
) -> list[Quarantine]:
    """Quarantine these tests (already quarantined ones keep their first record)."""
    made = []
    with transaction.atomic():
        for test in tests:
            quarantine, created = Quarantine.objects.get_or_create(
                test=test,
                defaults={
                    "repository_id": test.repository_id,
                    "created_by": created_by,
                    "reason": reason,
                },
            )
            if created:
                logger.info("%s quarantined by %s", test, created_by or "unknown")
            made.append(quarantine)
    return made


def release_tests(*, tests: list[TestCase]) -> int:
    """Take these tests out of quarantine; returns how many were in it."""
    deleted, _ = Quarantine.objects.filter(test__in=tests).delete()
    return deleted
