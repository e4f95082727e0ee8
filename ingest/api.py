"""REST API of stored runs: every workflow run attempt imported, with its counts and refused files."""

from __future__ import annotations

from rest_framework import mixins, serializers, viewsets

from ingest.models import WorkflowRun


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


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = RunSerializer
    queryset = WorkflowRun.objects.select_related("repository").order_by("-started_at")
