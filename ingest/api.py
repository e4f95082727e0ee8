"""REST API of stored runs: every workflow run attempt imported, with its counts and refused files.

``results_pruned_at`` says when retention removed a run's results (null while they are kept).
"""

from __future__ import annotations

from django_filters import rest_framework as filters
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
            "results_pruned_at",
        ]


class RunFilter(filters.FilterSet):
    started_after = filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="gte")
    started_before = filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="lt")
    sha = filters.CharFilter(method="filter_sha", help_text="the commit, or the start of its sha")

    class Meta:
        model = WorkflowRun
        fields = ["branch", "event", "sha", "started_after", "started_before"]

    def filter_sha(self, queryset, name, value):
        return queryset.filter(sha__startswith=value.lower())


class RunViewSet(
    RepositoryScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Stored run attempts of the repositories the caller may read, newest first.
    Filters: ``?repo=``, ``?branch=``, ``?sha=``, ``?event=``, ``?started_after=``, ``?started_before=``."""

    serializer_class = RunSerializer
    filterset_class = RunFilter
    ordering = ("-started_at", "-id")
    ordering_fields = ["started_at", "results_count", "id"]

    def get_queryset(self):
        return self.scoped(WorkflowRun.objects.select_related("repository"))
