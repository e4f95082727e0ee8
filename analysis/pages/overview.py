"""``/``: one card per repository the user may read, and the flakiest tests across them."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from analysis.charts import Series, line_chart, sparkline
from analysis.models import Incident, RepositorySnapshot, TestScore
from analysis.quarantines import active_quarantines
from analysis.scoring import TestStatus
from ingest.access import Action, access_for


def _count(queryset) -> Subquery:
    """A per-repository count as a subquery: counts over joins multiply one another."""
    return Coalesce(
        Subquery(
            queryset.filter(repository=OuterRef("pk"))
            .order_by()
            .values("repository")
            .annotate(n=Count("pk"))
            .values("n")[:1]
        ),
        0,
    )


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    visible = access_for(request).repositories(Action.READ)
    quarantined = active_quarantines()
    in_quarantine = quarantined.values("test_id")
    repositories = visible.annotate(
        flaky=_count(TestScore.objects.filter(verdict=TestStatus.FLAKY).exclude(test_id__in=in_quarantine)),
        failing=_count(TestScore.objects.filter(verdict=TestStatus.FAILING).exclude(test_id__in=in_quarantine)),
        quarantined=_count(quarantined),
        scored=_count(TestScore.objects.all()),
    ).order_by("-flaky", "full_name")  # fmt: skip
    flakiest = (
        TestScore.objects.filter(repository__in=visible, verdict=TestStatus.FLAKY)
        .select_related("repository", "test")
        .order_by("-score", "-failures", "test_id")[:10]
    )
    incidents = (
        Incident.objects.filter(repository__in=visible)
        .select_related("repository")
        .order_by("-started_at", "-id")[:8]
    )
    repositories = list(repositories)
    _draw_trends(repositories)
    lost = sum(s.ci_seconds_lost for r in repositories for s in r.days)
    return render(
        request,
        "dashboard/index.html",
        {
            "trend": _flaky_trend(repositories),
            "lost": _duration(lost) if lost else "",
            "repositories": repositories,
            "flakiest": flakiest,
            "incidents": incidents,
        },
    )


_TREND_DAYS = 30


def _snapshots(repositories) -> dict[int, list[RepositorySnapshot]]:
    """Each repository's snapshots of the _TREND_DAYS days up to its latest one."""
    found: dict[int, list[RepositorySnapshot]] = {}
    taken = RepositorySnapshot.objects.filter(repository__in=[r.pk for r in repositories])
    latest = taken.aggregate(day=Max("day"))["day"]
    if latest is None:
        return found
    for snapshot in taken.filter(day__gt=latest - timedelta(days=_TREND_DAYS)).order_by("day"):
        found.setdefault(snapshot.repository_id, []).append(snapshot)
    return found


def _draw_trends(repositories) -> None:
    """Each card's sparklines: flaky, failing and quarantined, a point a day."""
    days = _snapshots(repositories)
    for repository in repositories:
        taken = days.get(repository.pk, [])
        repository.days = taken
        repository.sparklines = [
            (
                field,
                sparkline(
                    [(s.day, getattr(s, field)) for s in taken],
                    title=f"{field} tests of {repository.full_name}, {_TREND_DAYS} days",
                ),
            )
            for field in ("flaky", "failing", "quarantined")
        ]


def _flaky_trend(repositories) -> str:
    series = [
        Series(name=r.full_name, points=[(s.day, s.flaky) for s in r.days])
        for r in repositories
        if len(r.days) > 1
    ]
    if not series:
        return ""
    return line_chart(series[:8], title="Flaky tests per day", y_label="flaky tests", width=880)


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
