"""Who owns a test: its ``TestOwner`` rows (CODEOWNERS, or a person's choice) and, for a
quarantined test, the quarantine's owner."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from analysis.models import TestOwner
from analysis.quarantines import active_quarantines


def owned_by(owner: str) -> Q:
    """A filter for TestScore (or anything with ``test_id``) on one owner."""
    return Q(Exists(TestOwner.objects.filter(test_id=OuterRef("test_id"), owner=owner))) | Q(
        Exists(active_quarantines().filter(test_id=OuterRef("test_id"), owner__contains=owner))
    )


def owners_of(test_ids: list[int]) -> dict[int, list[str]]:
    """{test id: its owners}, in one query."""
    found: dict[int, list[str]] = {}
    for test_id, owner in (
        TestOwner.objects.filter(test_id__in=test_ids)
        .order_by("owner")
        .values_list("test_id", "owner")
    ):
        found.setdefault(test_id, []).append(owner)
    return found
