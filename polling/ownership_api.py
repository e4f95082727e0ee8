"""``/api/v1/codeowners/``: a repository's CODEOWNERS, read, or uploaded by a CI that is not
GitHub Actions (an ``upload`` token may do it, as it uploads reports)."""

from __future__ import annotations

from django.http import Http404
from rest_framework import serializers, status, views
from rest_framework.request import Request
from rest_framework.response import Response

from ingest.access import Action, access_for
from ingest.serializers import StrictSerializer
from polling.models import CodeOwnersFile, CodeOwnersSource
from polling.ownership import store_codeowners

_MAX_CHARS = 3 << 20  # GitHub refuses CODEOWNERS files over 3 MB


class CodeOwnersUpload(StrictSerializer):
    repo = serializers.CharField()
    content = serializers.CharField(allow_blank=True, max_length=_MAX_CHARS, trim_whitespace=False)


class CodeOwnersView(views.APIView):
    """GET ``?repo=OWNER/NAME``: the file in use and the lines GitHub would refuse.
    PUT ``{"repo": …, "content": …}``: use this file and restate every test's owners."""

    serializer_class = CodeOwnersUpload

    def get(self, request: Request) -> Response:
        repository = (
            access_for(request)
            .repositories(Action.READ)
            .filter(full_name=request.query_params.get("repo", ""))
            .first()
        )
        if repository is None:
            raise Http404("no such repository")
        stored = CodeOwnersFile.objects.filter(repository=repository).first()
        if stored is None:
            raise Http404("no CODEOWNERS for this repository")
        return Response(
            {
                "repo": repository.full_name,
                "source": stored.source,
                "path": stored.path,
                "content": stored.content,
                "errors": stored.errors,
                "updated_at": stored.updated_at,
            }
        )

    def put(self, request: Request) -> Response:
        given = CodeOwnersUpload(data=request.data)
        given.is_valid(raise_exception=True)
        access = access_for(request)
        name = given.validated_data["repo"]
        repository = (
            (access.repositories(Action.UPLOAD) | access.repositories(Action.SETTINGS))
            .filter(full_name=name)
            .first()
        )
        if repository is None:
            if access.repositories(Action.READ_QUARANTINE).filter(full_name=name).exists():
                return Response(
                    {"detail": "your access does not allow changing CODEOWNERS"},
                    status=status.HTTP_403_FORBIDDEN,
                )
            raise Http404("no such repository")
        stored = store_codeowners(
            repository=repository,
            content=given.validated_data["content"],
            source=CodeOwnersSource.UPLOAD,
        )
        return Response({"repo": name, "errors": stored.errors}, status=status.HTTP_200_OK)
