"""REST API of stored runs: every workflow run attempt imported, with its counts and refused files."""

from __future__ import annotations

from rest_framework import mixins, serializers, viewsets

from ingest.models import WorkflowRun
from ingest.permissions import RepositoryScoped


class RunSerializer(serializers.ModelSerializer):
    repo = serializers.CharField(source="repository.full_name")

    class Meta:
        model = WorkflowRun
        fields = [
            "id",
            "repo",
            "run_id",
            "run_attempt",
            "sha",
            "branch",
            "event",
            "workflow",
            "started_at",
            "results_count",
            "files_count",
            "file_errors",
        ]


class RunViewSet(
    RepositoryScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Stored run attempts of the repositories the caller may read, newest first."""

    serializer_class = RunSerializer

    def get_queryset(self):
        return self.scoped(
            WorkflowRun.objects.select_related("repository").order_by("-started_at", "-id")
        )
