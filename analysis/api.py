"""REST API for analysis: scored tests (the flaky list), infrastructure incidents, quarantines.

CI pipelines read ``/api/v1/quarantine/?repo=owner/name`` to skip or ignore the
tests people have quarantined; dashboards read ``/api/v1/tests/`` and
``/api/v1/incidents/``.
"""

from __future__ import annotations

from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import ValidationError

from analysis.models import Incident, Quarantine, TestScore
from analysis.quarantines import quarantine_tests
from analysis.scoring import TestStatus, describe_event
from ingest.models import TestCase


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
        return hasattr(score.test, "quarantine")

    def get_status(self, score: TestScore) -> str:
        return TestStatus.QUARANTINED.value if self.get_quarantined(score) else score.verdict

    def get_evidence(self, score: TestScore) -> list[str]:
        return [describe_event(event) for event in score.evidence]


class TestScoreViewSet(viewsets.ReadOnlyModelViewSet):
    """Scored tests, worst first. Filters: ``?repo=owner/name``, ``?status=flaky``."""

    __test__ = False  # not a pytest test class

    serializer_class = TestScoreSerializer

    def get_queryset(self):
        queryset = TestScore.objects.select_related(
            "repository", "test", "test__quarantine"
        ).order_by("-score", "-failures", "test_id")
        params = self.request.query_params
        if params.get("repo"):
            queryset = queryset.filter(repository__full_name=params["repo"])
        status = params.get("status")
        if status == TestStatus.QUARANTINED:
            queryset = queryset.filter(test__quarantine__isnull=False)
        elif status:
            queryset = queryset.filter(verdict=status, test__quarantine__isnull=True)
        return queryset


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


class IncidentViewSet(viewsets.ReadOnlyModelViewSet):
    """Job attempts whose failures were put down to infrastructure, newest first.
    Filter: ``?repo=owner/name``."""

    serializer_class = IncidentSerializer

    def get_queryset(self):
        queryset = Incident.objects.select_related("repository").order_by(
            "-started_at", "-run_attempt", "job"
        )
        repo = self.request.query_params.get("repo")
        if repo:
            queryset = queryset.filter(repository__full_name=repo)
        return queryset


class QuarantineSerializer(serializers.ModelSerializer):
    repo = serializers.CharField(source="repository.full_name", read_only=True)
    test = serializers.PrimaryKeyRelatedField(queryset=TestCase.objects.all())
    classname = serializers.CharField(source="test.classname", read_only=True)
    name = serializers.CharField(source="test.name", read_only=True)
    file = serializers.CharField(source="test.file", read_only=True)

    class Meta:
        model = Quarantine
        fields = ["test", "repo", "classname", "name", "file", "reason", "created_by", "created_at"]
        read_only_fields = ["created_by", "created_at"]


class QuarantineViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Quarantined tests; POST ``{"test": id, "reason": "…"}`` to add, DELETE to release."""

    serializer_class = QuarantineSerializer

    def get_queryset(self):
        queryset = Quarantine.objects.select_related("repository", "test").order_by("-created_at")
        repo = self.request.query_params.get("repo")
        if repo:
            queryset = queryset.filter(repository__full_name=repo)
        return queryset

    def perform_create(self, serializer: QuarantineSerializer) -> None:
        test = serializer.validated_data["test"]
        if Quarantine.objects.filter(test=test).exists():
            raise ValidationError({"test": "this test is already quarantined"})
        [serializer.instance] = quarantine_tests(
            tests=[test],
            created_by=self.request.user.get_username(),
            reason=serializer.validated_data.get("reason", ""),
        )
