"""REST API v1 root: jobs (including the dead-letter queue and retries) and runs."""

from __future__ import annotations

from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from flakeguard.jobs import retry_jobs
from flakeguard.models import Job, JobState
from ingest.models import WorkflowRun


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "dedup_key",
            "state",
            "attempts",
            "max_attempts",
            "next_attempt_at",
            "last_error",
            "result",
            "created_at",
            "updated_at",
            "finished_at",
        ]


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    """Jobs; filter with ``?state=dead`` for the dead-letter queue.

    An operator's view, like the job admin: errors carry tracebacks and a
    retry puts work back on the queues, so it is for staff only.
    """

    serializer_class = JobSerializer
    permission_classes = [permissions.IsAdminUser]

    def get_queryset(self):
        queryset = Job.objects.order_by("-id")
        state = self.request.query_params.get("state")
        if state:
            queryset = queryset.filter(state=state)
        return queryset

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        # retry_jobs re-checks the state under the row lock: a concurrent retry
        # that got there first makes this one a conflict, not a second success.
        retried = job.state == JobState.DEAD and retry_jobs([job.pk]) == 1
        job.refresh_from_db()
        if not retried:
            return Response(
                {"detail": f"only dead jobs can be retried; this one is {job.state}"},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(JobSerializer(job).data)


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
