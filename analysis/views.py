"""The dashboard: repositories with their flaky and failing tests, and one repository's list.

Each page shows only the repositories the user has been granted (staff: all).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from analysis.models import TestScore
from analysis.scoring import TestStatus, describe_event
from ingest.access import Action, access_for

_SHOWN = (TestStatus.FLAKY, TestStatus.FAILING)


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    repositories = (
        access_for(request)
        .repositories(Action.READ)
        .annotate(
            flaky=Count("scores", filter=Q(scores__verdict=TestStatus.FLAKY)),
            failing=Count("scores", filter=Q(scores__verdict=TestStatus.FAILING)),
            scored=Count("scores", distinct=True),
            quarantined=Count("quarantines", distinct=True),
        )
        .order_by("-flaky", "full_name")
    )
    return render(request, "dashboard/index.html", {"repositories": repositories})


@login_required
def repository_tests(request: HttpRequest, full_name: str) -> HttpResponse:
    # A repository the user may not read is answered as if it did not exist.
    repository = get_object_or_404(
        access_for(request).repositories(Action.READ), full_name=full_name
    )
    scores = (
        TestScore.objects.filter(repository=repository)
        .filter(Q(verdict__in=_SHOWN) | Q(test__quarantine__isnull=False))
        .select_related("test", "test__quarantine")
        .order_by("-score", "-failures")[:500]
    )
    rows = [
        {
            "score": score,
            "quarantine": getattr(score.test, "quarantine", None),
            "evidence": [describe_event(event) for event in score.evidence],
        }
        for score in scores
    ]
    return render(request, "dashboard/repository.html", {"repository": repository, "rows": rows})
