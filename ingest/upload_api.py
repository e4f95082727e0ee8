"""``POST /api/v1/uploads/``: any CI's way in. Multipart run metadata and report files.

Files are streamed to temporary files by Django's upload handler, never held
in memory, then copied into the database in chunks (``ingest.uploads``). A
request whose Content-Length is over ``FLAKEGUARD_UPLOAD_MAX_BYTES`` is refused
with 413 before its body is read (Django reads no more of a body than its
Content-Length). Uploads are rate-limited per token (429, ``Retry-After``).
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import Http404
from django.urls import reverse
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from ingest.access import Action
from ingest.models import ApiToken, Upload
from ingest.permissions import RepositoryScoped
from ingest.runs import RunInfo
from ingest.serializers import StrictSerializer
from ingest.uploads import UPLOAD_SUFFIXES, receive_upload, state_of, summary_of


class UploadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


def _too_large() -> UploadTooLarge:
    limit = settings.FLAKEGUARD_UPLOAD_MAX_BYTES
    return UploadTooLarge(f"the upload is larger than the limit of {limit:,} bytes")


class UploadThrottle(SimpleRateThrottle):
    """Per token (or user, or address): one CI's retries cannot starve another's uploads."""

    scope = "uploads"

    def get_rate(self) -> str:
        return settings.FLAKEGUARD_UPLOAD_RATE

    def get_cache_key(self, request: Request, view) -> str:
        if isinstance(request.auth, ApiToken):
            ident = f"token:{request.auth.pk}"
        elif request.user and request.user.is_authenticated and request.user.pk:
            ident = f"user:{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class UploadRequestSerializer(StrictSerializer):
    also_accepted = frozenset({"files"})

    repo = serializers.CharField(max_length=200)
    run_id = serializers.IntegerField(min_value=1)
    run_attempt = serializers.IntegerField(min_value=1, default=1)
    sha = serializers.RegexField(r"^[0-9a-fA-F]{7,64}$", error_messages={"invalid": "not a sha"})
    branch = serializers.CharField(max_length=255, allow_blank=True, default="")
    event = serializers.CharField(max_length=40, allow_blank=True, default="")
    started_at = serializers.DateTimeField()
    workflow = serializers.CharField(max_length=255, allow_blank=True, default="")
    job = serializers.CharField(max_length=255, allow_blank=True, default="")


class UploadSerializer(serializers.ModelSerializer):
    repo = serializers.CharField(source="repository.full_name")
    url = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    summary = serializers.SerializerMethodField()

    class Meta:
        model = Upload
        fields = [
            "id", "url", "repo", "run_id", "run_attempt", "state", "summary", "error", "files",
            "created_at", "finished_at",
        ]  # fmt: skip

    def get_url(self, upload: Upload) -> str:
        path = reverse("upload-detail", args=[upload.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_state(self, upload: Upload) -> str:
        return state_of(upload)[0]

    def get_error(self, upload: Upload) -> str:
        return state_of(upload)[1]

    def get_summary(self, upload: Upload) -> dict | None:
        return summary_of(upload) if state_of(upload)[0] == "done" else None


class UploadViewSet(RepositoryScoped, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Upload reports for one run attempt (multipart); GET the upload to follow its import."""

    serializer_class = UploadSerializer
    parser_classes = [MultiPartParser]

    def initialize_request(self, request, *args, **kwargs):
        # Before anything reads the body (a session's CSRF check would): files
        # go to disk as they arrive, however small, never into memory.
        request.upload_handlers = [TemporaryFileUploadHandler(request)]
        return super().initialize_request(request, *args, **kwargs)

    def get_throttles(self):
        return [UploadThrottle()] if self.action == "create" else []

    def get_queryset(self):
        readable = self.access.repositories(Action.READ) | self.access.repositories(Action.UPLOAD)
        return Upload.objects.select_related("repository", "job").filter(repository__in=readable)

    def create(self, request: Request, *args, **kwargs) -> Response:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.FLAKEGUARD_UPLOAD_MAX_BYTES:
            raise _too_large()
        given = UploadRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        repository = self.access.repositories(Action.UPLOAD).filter(full_name=data["repo"]).first()
        if repository is None:
            visible = self.access.repositories(Action.READ).filter(full_name=data["repo"]).first()
            if visible is None:
                raise Http404(f"no repository {data['repo']}")
            self.require(Action.UPLOAD, visible)
        files = request.FILES.getlist("files")
        if not files:
            raise exceptions.ValidationError({"files": ["give one or more .xml or .zip files"]})
        bad = [f.name for f in files if not f.name.lower().endswith(UPLOAD_SUFFIXES)]
        if bad:
            raise exceptions.ValidationError(
                {"files": [f"{name}: only .xml and .zip files are accepted" for name in bad]}
            )
        run = RunInfo(
            repo=repository.full_name,
            run_id=data["run_id"],
            run_attempt=data["run_attempt"],
            sha=data["sha"].lower(),
            branch=data["branch"],
            event=data["event"],
            workflow=data["workflow"],
            started_at=data["started_at"],
        )
        upload, created = receive_upload(
            repository=repository,
            run=run,
            job_label=data["job"],
            files=[(f.name, f) for f in files],
            created_by=request.user.get_username(),
        )
        body = UploadSerializer(upload, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)
