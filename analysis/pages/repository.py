"""``/repos/OWNER/NAME/``: the repository's tests, searched, filtered, sorted and paged."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from analysis.models import TestScore
from analysis.owners import owned_by, owners_of
from analysis.pages.common import readable_repository
from analysis.quarantines import active_quarantines
from analysis.scoring import TestStatus
from analysis.tallies import with_tallies
from ingest.models import TestResult, WorkflowRun

PAGE_SIZE = 50
# ?sort= values: the column a person clicks, and what it orders by (worst first).
SORTS = {
    "score": ("-score", "-failures", "test_id"),
    "failures": ("-failures", "-score", "test_id"),
    "runs": ("-results", "test_id"),
    "flaky_since": ("-flaky_since", "test_id"),
    "last_failure": ("-last_failure_at", "test_id"),
    "name": ("test__classname", "test__name", "test_id"),
}
STATUSES = [s.value for s in TestStatus]


@login_required
def repository_tests(request: HttpRequest, full_name: str) -> HttpResponse:
    repository = readable_repository(request, full_name)
    params = request.GET
    quarantine = active_quarantines().filter(test_id=OuterRef("test_id"))
    scores = TestScore.objects.filter(repository=repository).select_related("test")
    search = params.get("q", "").strip()
    if search:
        scores = scores.filter(
            Q(test__name__icontains=search) | Q(test__classname__icontains=search)
        )
    status = params.get("status", "")
    if status == TestStatus.QUARANTINED:
        scores = scores.filter(Exists(quarantine))
    elif status in STATUSES:
        scores = scores.filter(~Exists(quarantine), verdict=status)
    owner = params.get("owner", "").strip()
    if owner:
        scores = scores.filter(owned_by(owner))
    job = params.get("job", "").strip()
    if job:
        scores = scores.filter(
            Exists(TestResult.objects.filter(test_id=OuterRef("test_id"), job=job))
        )
    branch = params.get("branch", "").strip()
    if branch:
        scores = scores.filter(
            Exists(TestResult.objects.filter(test_id=OuterRef("test_id"), run__branch=branch))
        )
    sort = params.get("sort", "score")
    if sort not in SORTS:
        sort = "score"
    page = Paginator(scores.order_by(*SORTS[sort]), PAGE_SIZE).get_page(params.get("page"))
    quarantines = {
        q.test_id: q for q in active_quarantines().filter(test_id__in=[s.test_id for s in page])
    }
    owners = owners_of([s.test_id for s in page])
    rows = [
        {
            "score": score,
            "quarantine": quarantines.get(score.test_id),
            "owners": owners.get(score.test_id, []),
        }
        for score in with_tallies(page)
    ]
    query = params.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboard/repository.html",
        {
            "repository": repository,
            "rows": rows,
            "page": page,
            "query": query.urlencode(),
            "sort": sort,
            "filters": {
                "q": search,
                "status": status,
                "owner": owner,
                "job": job,
                "branch": branch,
            },
            "statuses": STATUSES,
            "jobs": _jobs(repository),
            "branches": _branches(repository),
            "sorts": list(SORTS),
        },
    )


def _jobs(repository) -> list[str]:
    """The job labels of the repository's recent runs, for the job filter."""
    loads = WorkflowRun.objects.filter(repository=repository).order_by("-started_at")[:200]
    labels = {job for run in loads.values_list("job_loads", flat=True) for job in (run or {})}
    return sorted(label for label in labels if label)


def _branches(repository) -> list[str]:
    return list(
        WorkflowRun.objects.filter(repository=repository)
        .exclude(branch="")
        .values_list("branch", flat=True)
        .distinct()
        .order_by("branch")[:200]
    )
