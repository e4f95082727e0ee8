"""``/repos/OWNER/NAME/failures/``: failure fingerprints shared by several tests.

One root cause (a service down, a fixture broken) fails many tests with the
same message; grouping the failures by fingerprint shows the cause once, with
the tests and runs it touched, so a team fixes it rather than twenty tests.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max, Min
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from analysis.pages.common import github_run_url, readable_repository
from ingest.models import TestResult, WorkflowRun

WINDOW_DAYS = 30
_GROUPS_SHOWN = 50


@login_required
def failure_groups(request: HttpRequest, full_name: str) -> HttpResponse:
    repository = readable_repository(request, full_name)
    # The 30 days up to the repository's latest run: a quiet repository still
    # shows what last failed it.
    latest = (
        WorkflowRun.objects.filter(repository=repository).aggregate(latest=Max("started_at"))[
            "latest"
        ]
        or timezone.now()
    )
    since = latest - timedelta(days=WINDOW_DAYS)
    failures = TestResult.objects.filter(
        run__repository=repository, run__started_at__gte=since, outcome__in=["failed", "error"]
    ).exclude(fingerprint="")
    groups = list(
        failures.values("fingerprint")
        .annotate(
            tests=Count("test", distinct=True),
            runs=Count("run", distinct=True),
            failures=Count("pk"),
            first=Min("run__started_at"),
            last=Max("run__started_at"),
        )
        .filter(tests__gte=2)
        .order_by("-tests", "-failures", "fingerprint")[:_GROUPS_SHOWN]
    )
    for group in groups:
        of_group = failures.filter(fingerprint=group["fingerprint"])
        group["sample"] = (
            of_group.order_by("-run__started_at").values_list("message", flat=True).first()
        )
        group["test_list"] = list(
            of_group.values("test_id", "test__classname", "test__name")
            .annotate(n=Count("pk"))
            .order_by("-n", "test_id")[:10]
        )
        group["run_list"] = [
            {**run, "url": github_run_url(repository, run["run__run_id"], run["run__run_attempt"])}
            for run in of_group.values("run__run_id", "run__run_attempt", "run__started_at", "job")
            .annotate(n=Count("pk"))
            .order_by("-run__started_at")[:5]
        ]
    return render(
        request,
        "dashboard/failures.html",
        {"repository": repository, "groups": groups, "window_days": WINDOW_DAYS},
    )
