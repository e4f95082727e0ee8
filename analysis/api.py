"""REST API for analysis: scored tests (the flaky list) and infrastructure incidents.

Dashboards read ``/api/v1/tests/`` and ``/api/v1/incidents/``; quarantines,
which CI reads, are in ``analysis.quarantine_api``.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django_filters import rest_framework as filters
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from analysis.models import Incident, QuarantineEvent, TestScore
from analysis.owners import owned_by
from analysis.quarantines import active_quarantines
from analysis.scoring import TestStatus, describe_event
from analysis.tallies import with_tallies
from ingest.models import TestResult
from ingest.permissions import RepositoryScoped


class TestScoreSerializer(serializers.ModelSerializer):
    __test__ = False  # not a pytest test class

    id = serializers.IntegerField(source="test_id")
    repo = serializers.CharField(source="repository.full_name")
    classname = serializers.CharField(source="test.classname")
    name = serializers.CharField(source="test.name")
    file = serializers.CharField(source="test.file")
    is_flaky = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    quarantined = serializers.SerializerMethodField()
    runs = serializers.IntegerField(source="results")
    evidence = serializers.SerializerMethodField()

    class Meta:
        model = TestScore
        fields = [
            "id",
            "repo",
            "classname",
            "name",
            "file",
            "score",
            "is_flaky",
            "status",
            "verdict",
            "quarantined",
            "runs",
            "failures",
            "flaky_since",
            "last_failure_at",
            "components",
            "evidence",
        ]

    def get_is_flaky(self, score: TestScore) -> bool:
        return score.verdict == TestStatus.FLAKY

    def get_quarantined(self, score: TestScore) -> bool:
        quarantine = getattr(score.test, "quarantine", None)
        return quarantine is not None and (
            quarantine.expires_at is None or quarantine.expires_at > timezone.now()
        )

    def get_status(self, score: TestScore) -> str:
        return TestStatus.QUARANTINED.value if self.get_quarantined(score) else score.verdict

    def get_evidence(self, score: TestScore) -> list[str]:
        return [describe_event(event) for event in score.evidence]


class TestScoreFilter(filters.FilterSet):
    """``?status=flaky``, ``?score_min=0.5``, ``?owner=team-pay``, ``?search=checkout``,
    ``?branch=main``; ``?repo=OWNER/NAME`` is the view's own (404 for a repository not yours)."""

    status = filters.ChoiceFilter(
        choices=[(s.value, s.value) for s in TestStatus], method="filter_status"
    )
    score_min = filters.NumberFilter(field_name="score", lookup_expr="gte")
    score_max = filters.NumberFilter(field_name="score", lookup_expr="lte")
    owner = filters.CharFilter(
        method="filter_owner",
        help_text="an owner: CODEOWNERS, set by a person, or the quarantine's",
    )
    search = filters.CharFilter(method="filter_search", help_text="in the name or class name")
    branch = filters.CharFilter(method="filter_branch", help_text="tests that ran on the branch")

    class Meta:
        model = TestScore
        fields = ["status", "score_min", "score_max", "owner", "search", "branch"]

    def filter_status(self, queryset, name, value):
        in_force = Exists(active_quarantines().filter(test_id=OuterRef("test_id")))
        if value == TestStatus.QUARANTINED:
            return queryset.filter(in_force)
        return queryset.filter(~in_force, verdict=value)

    def filter_owner(self, queryset, name, value):
        return queryset.filter(owned_by(value))

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(test__name__icontains=value) | Q(test__classname__icontains=value))

    def filter_branch(self, queryset, name, value):
        ran = TestResult.objects.filter(test_id=OuterRef("test_id"), run__branch=value)
        return queryset.filter(Exists(ran))


class TestScoreViewSet(RepositoryScoped, viewsets.ReadOnlyModelViewSet):
    """Scored tests, worst first, of the repositories you may read (``?repo=`` narrows)."""

    __test__ = False  # not a pytest test class

    serializer_class = TestScoreSerializer
    lookup_field = "test_id"  # the test's id, as everywhere in the API
    filterset_class = TestScoreFilter
    ordering = ("-score", "-failures", "test_id")
    ordering_fields = ["score", "failures", "results", "last_failure_at", "test_id"]

    def get_queryset(self):
        return self.scoped(
            TestScore.objects.select_related("repository", "test", "test__quarantine")
        )

    # Counts shown are the stored ones plus what pending tallies add.
    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return None if page is None else with_tallies(page)

    def get_object(self) -> TestScore:
        score = super().get_object()
        with_tallies([score])
        return score

    @action(detail=True, methods=["get"], url_path="quarantine-events")
    def quarantine_events(self, request: Request, test_id: str | None = None) -> Response:
        """The test's quarantine audit trail, newest first."""
        score = self.get_object()
        events = QuarantineEvent.objects.filter(test_id=score.test_id).order_by("-at", "-id")
        return Response(QuarantineEventSerializer(events, many=True).data)


class IncidentSerializer(serializers.ModelSerializer):
    repo = serializers.CharField(source="repository.full_name")
    run_id = serializers.IntegerField(source="github_run_id")

    class Meta:
        model = Incident
        fields = [
            "id",
            "repo",
            "run_id",
            "run_attempt",
            "job",
            "started_at",
            "tests_failed",
            "tests_in_job",
            "usual_failures",
            "rule",
            "fingerprints",
        ]


class IncidentFilter(filters.FilterSet):
    since = filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="lt")

    class Meta:
        model = Incident
        fields = ["job", "since", "until"]


class IncidentViewSet(RepositoryScoped, viewsets.ReadOnlyModelViewSet):
    """Job attempts whose failures were put down to infrastructure, newest first.
    Filters: ``?repo=owner/name``, ``?job=``, ``?since=``, ``?until=``."""

    serializer_class = IncidentSerializer
    filterset_class = IncidentFilter
    ordering = ("-started_at", "-id")
    ordering_fields = ["started_at", "tests_failed", "id"]

    def get_queryset(self):
        return self.scoped(Incident.objects.select_related("repository"))


class QuarantineEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = QuarantineEvent
        fields = ["action", "actor", "reason", "owner", "expires_at", "at"]
