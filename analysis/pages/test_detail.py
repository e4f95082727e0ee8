"""``/repos/OWNER/NAME/tests/<id>/``: one test's history, evidence, failures and quarantine.

The page reads the test's results once (the same reader scoring uses) and
draws from them the outcome timeline, one row per job, and the score over
time, replayed from the history at up to ``_SCORE_POINTS`` moments. A
maintainer quarantines or releases the test from a form on the page.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Min
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from analysis import loading
from analysis.charts import Mark, TimelineRow, outcome_timeline, score_chart
from analysis.models import QuarantineEvent, TestScore
from analysis.owners import owners_of
from analysis.pages.common import github_commit_url, github_run_url, readable_repository
from analysis.quarantines import active_quarantines, quarantine_tests, release_tests
from analysis.scoring import describe_event, score_test
from analysis.services import scoring_settings_for
from analysis.tallies import with_tallies
from ingest.access import Action, access_for
from ingest.models import TestCase, TestResult, WorkflowRun

_SCORE_POINTS = 16


class QuarantineForm(forms.Form):
    reason = forms.CharField(max_length=2000, required=False)
    owner = forms.CharField(max_length=255, required=False)
    expires_at = forms.DateField(required=False, help_text="default: 30 days from now")


@login_required
def test_detail(request: HttpRequest, full_name: str, test_id: int) -> HttpResponse:
    repository = readable_repository(request, full_name)
    test = TestCase.objects.filter(repository=repository, pk=test_id).first()
    if test is None:
        raise Http404("no such test")
    may_quarantine = access_for(request).can(Action.QUARANTINE, repository)
    if request.method == "POST":
        if not may_quarantine:
            raise PermissionDenied("your access to this repository does not allow quarantining")
        return _change_quarantine(request, repository, test)
    score = TestScore.objects.filter(test=test).first()
    if score is not None:
        with_tallies([score])
    context = loading.load_context(repository)
    rows = [rows for _, rows in loading.iter_histories([test.pk], context=context)]
    history = rows[0] if rows else []
    quarantine = active_quarantines().filter(test=test).first()
    # Retention removed the results of the runs up to this time: say so, rather
    # than let the history look as if the test had not run.
    pruned_before = WorkflowRun.objects.filter(
        repository=repository, results_pruned_at__isnull=False
    ).aggregate(latest=Max("started_at"))["latest"]
    return render(
        request,
        "dashboard/test.html",
        {
            "repository": repository,
            "test": test,
            "score": score,
            "evidence": [
                _evidence_line(repository, event) for event in (score.evidence if score else [])
            ],
            "timeline": _timeline(repository, history, context),
            "score_chart": _score_chart(repository, history, context),
            "failure_groups": _failure_groups(test),
            "recent_failures": _recent_failures(repository, history, context),
            "quarantine": quarantine,
            "pruned_before": pruned_before,
            "owners": owners_of([test.pk]).get(test.pk, []),
            "events": QuarantineEvent.objects.filter(test=test).order_by("-at", "-id")[:50],
            "may_quarantine": may_quarantine,
            "form": QuarantineForm(),
        },
    )


def _change_quarantine(request: HttpRequest, repository, test: TestCase) -> HttpResponse:
    actor = request.user.get_username()
    if request.POST.get("action") == "release":
        released = release_tests(tests=[test], actor=actor, reason=request.POST.get("reason", ""))
        messages.success(request, "Released from quarantine." if released else "Not quarantined.")
    else:
        form = QuarantineForm(request.POST)
        if not form.is_valid():
            messages.error(request, f"Not quarantined: {form.errors.as_text()}")
        else:
            day = form.cleaned_data["expires_at"]
            quarantine_tests(
                tests=[test],
                created_by=actor,
                reason=form.cleaned_data["reason"],
                owner=form.cleaned_data["owner"],
                expires_at=datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None,
            )
            messages.success(request, "Quarantined.")
    return redirect("test-detail", repository.full_name, test.pk)


def _evidence_line(repository, event: dict) -> dict:
    """One line of evidence with links to the runs and the commit it names."""
    runs = [event] if "run_id" in event else [*event.get("failed", []), *event.get("passed", [])]
    links = [
        (f"run {r['run_id']} attempt {r.get('attempt', 1)}",
         github_run_url(repository, r["run_id"], r.get("attempt", 1)))
        for r in runs if r.get("run_id")
    ][:4]  # fmt: skip
    commit = event.get("sha")
    return {
        "text": describe_event(event),
        "links": links,
        "commit": (commit[:7], github_commit_url(repository, commit)) if commit else None,
    }


def _outcome_class(row) -> str:
    if row.outcome == "passed" and row.flaky_reruns:
        return "flaky"
    return row.outcome


def _timeline(repository, history, context) -> str:
    per_job: dict[str, list[Mark]] = {}
    for row in history:
        run = context.runs[row.run_pk]
        per_job.setdefault(row.job or "(no job)", []).append(
            Mark(
                outcome=_outcome_class(row),
                at=datetime.fromtimestamp(run.started_at, UTC),
                branch=run.branch,
                sha=run.sha,
                run_label=f"{run.run_id} attempt {run.attempt}",
                url=github_run_url(repository, run.run_id, run.attempt),
            )
        )
    return outcome_timeline(
        [TimelineRow(label=job, marks=marks) for job, marks in sorted(per_job.items())],
        title="Outcomes, one mark per result",
    )


def _score_chart(repository, history, context) -> str:
    """The score as it stood after each of up to _SCORE_POINTS runs of the history."""
    if not history:
        return score_chart([], title="Score over time")
    settings = scoring_settings_for(repository)
    ordered = sorted(history, key=lambda row: (context.runs[row.run_pk].order, row.position))
    run_ends = [i for i in range(1, len(ordered) + 1)
                if i == len(ordered) or ordered[i].run_pk != ordered[i - 1].run_pk]  # fmt: skip
    step = max(1, len(run_ends) // _SCORE_POINTS)
    points = []
    for end in [*run_ends[::step], run_ends[-1]]:
        run = context.runs[ordered[end - 1].run_pk]
        verdict = score_test(ordered[:end], context, settings)
        points.append((datetime.fromtimestamp(run.started_at, UTC), verdict.score))
    return score_chart(
        sorted(set(points)), title="Score over time", threshold=settings.flaky_threshold
    )


def _failure_groups(test: TestCase) -> list[dict]:
    """The test's failures by fingerprint: how many, first and last seen, one full sample."""
    failures = TestResult.objects.filter(test=test, outcome__in=["failed", "error"])
    groups = (
        failures.values("fingerprint")
        .annotate(count=Count("pk"), first=Min("run__started_at"), last=Max("run__started_at"))
        .order_by("-count", "fingerprint")[:20]
    )
    return [
        {
            **group,
            "sample": failures.filter(fingerprint=group["fingerprint"])
            .order_by("-run__started_at")
            .values_list("message", flat=True)
            .first(),
        }
        for group in groups
    ]


def _recent_failures(repository, history, context) -> list[dict]:
    failed = [row for row in history if row.outcome in ("failed", "error")]
    latest = sorted(failed, key=lambda row: context.runs[row.run_pk].order, reverse=True)[:10]
    out = []
    for row in latest:
        run = context.runs[row.run_pk]
        out.append(
            {
                "at": datetime.fromtimestamp(run.started_at, UTC),
                "job": row.job,
                "branch": run.branch,
                "sha": run.sha[:7],
                "run": f"run {run.run_id} attempt {run.attempt}",
                "run_url": github_run_url(repository, run.run_id, run.attempt),
                "commit_url": github_commit_url(repository, run.sha),
            }
        )
    return out
