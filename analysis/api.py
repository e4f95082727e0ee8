"""REST API for analysis: scored tests (the flaky list) and infrastructure incidents.

Dashboards read ``/api/v1/tests/`` and ``/api/v1/incidents/``; quarantines,
which CI reads, are in ``analysis.quarantine_api``.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from django.utils import timezone
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from analysis.models import Incident, QuarantineEvent, TestScore
from analysis.quarantines import active_quarantines
from analysis.scoring import TestStatus, describe_event
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


class TestScoreViewSet(RepositoryScoped, viewsets.ReadOnlyModelViewSet):
    """Scored tests, worst first. Filters: ``?repo=owner/name``, ``?status=flaky``."""

    __test__ = False  # not a pytest test class

    serializer_class = TestScoreSerializer

    def get_queryset(self):
        queryset = self.scoped(
            TestScore.objects.select_related("repository", "test", "test__quarantine").order_by(
                "-score", "-failures", "test_id"
            )
        )
        status = self.request.query_params.get("status")
        in_force = Exists(active_quarantines().filter(test_id=OuterRef("test_id")))
        if status == TestStatus.QUARANTINED:
            queryset = queryset.filter(in_force)
        elif status:
            queryset = queryset.filter(~in_force, verdict=status)
        return queryset

    @action(detail=True, methods=["get"], url_path="quarantine-events")
    def quarantine_events(self, request: Request, pk: str | None = None) -> Response:
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


class IncidentViewSet(RepositoryScoped, viewsets.ReadOnlyModelViewSet):
    """Job attempts whose failures were put down to infrastructure, newest first.
    Filter: ``?repo=owner/name``."""

    serializer_class = IncidentSerializer

    def get_queryset(self):
        return self.scoped(
            Incident.objects.select_related("repository").order_by(
                "-started_at", "-run_attempt", "job", "id"
            )
        )


class QuarantineEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = QuarantineEvent
        fields = ["action", "actor", "reason", "owner", "expires_at", "at"]
