"""REST API of the job table: jobs, the dead-letter queue (``?state=dead``) and retries."""

from __future__ import annotations

from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.models import Job, JobState
from jobs.sweeper import retry_jobs


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


class HasJobPermission(permissions.BasePermission):
    """The job model's permissions, as in the admin: ``jobs.view_job`` to read, and
    ``jobs.change_job`` to retry. Being staff is not enough; tokens carry none."""

    def has_permission(self, request: Request, view) -> bool:
        verb = "view" if request.method in permissions.SAFE_METHODS else "change"
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(f"jobs.{verb}_job"))


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    """Jobs; filter with ``?state=dead`` for the dead-letter queue.

    An operator's view, like the job admin: errors carry tracebacks and a
    retry puts work back on the queues, so it takes the job model's permissions.
    """

    serializer_class = JobSerializer
    permission_classes = [HasJobPermission]
    filterset_fields = ["state", "kind"]
    ordering = ("-id",)
    ordering_fields = ["id", "updated_at", "attempts"]

    def get_queryset(self):
        return Job.objects.all()

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
