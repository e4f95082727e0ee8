"""REST API of the job system: jobs, the dead-letter queue (``?state=dead``), retries, queues."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from jobs import queue_control
from jobs.models import Job, JobKind, JobState
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


class RetriedSerializer(serializers.Serializer):
    retried = serializers.IntegerField()


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

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("kind", str, enum=JobKind.values, required=False)],
        responses={200: RetriedSerializer},
    )
    @action(detail=False, methods=["post"], url_path="retry-dead")
    def retry_dead(self, request: Request) -> Response:
        """Send every dead job (of ``?kind=``) back to its queue; staff only."""
        if not request.user.is_staff:
            return Response({"detail": "only staff may retry every dead job"}, status=403)
        dead = Job.objects.filter(state=JobState.DEAD)
        kind = request.query_params.get("kind")
        if kind:
            if kind not in JobKind.values:
                return Response(
                    {"kind": [f"unknown job kind {kind!r}; kinds are {', '.join(JobKind.values)}"]},
                    status=status.HTTP_400_BAD_REQUEST,
                )
            dead = dead.filter(kind=kind)
        retried = retry_jobs(dead.values_list("pk", flat=True).iterator())
        return Response({"retried": retried})


class QueueSerializer(serializers.Serializer):
    name = serializers.CharField()
    depth = serializers.IntegerField(
        allow_null=True, help_text="messages waiting; null: broker away"
    )
    in_progress = serializers.IntegerField()
    dead = serializers.IntegerField()
    paused = serializers.BooleanField()


class QueueViewSet(viewsets.ViewSet):
    """Celery queues: depth, jobs in progress and dead, and pausing a queue's consumption.

    Staff only: a paused queue holds up every repository's work.
    """

    permission_classes = [permissions.IsAdminUser]
    lookup_field = "name"
    lookup_value_regex = "[a-z-]+"

    @extend_schema(responses=QueueSerializer(many=True))
    def list(self, request: Request) -> Response:
        return Response(queue_control.queue_stats())

    @extend_schema(request=None, responses=QueueSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, name: str) -> Response:
        return self._change(name, queue_control.pause_queue)

    @extend_schema(request=None, responses=QueueSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, name: str) -> Response:
        return self._change(name, queue_control.resume_queue)

    def _change(self, name: str, change) -> Response:
        try:
            change(name)
        except queue_control.UnknownQueue as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        stats = next(q for q in queue_control.queue_stats() if q["name"] == name)
        return Response(stats)
