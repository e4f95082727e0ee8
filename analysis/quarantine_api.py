"""REST API of quarantines: what CI reads to keep a build green, and how people set them.

``GET /api/v1/quarantine/?repo=OWNER/NAME`` lists the quarantines in force,
with each test's ``test_key`` (its identity, which a CI client computes from a
report's classname, file and name the same way), answered from one indexed
query without model instances and with an ``ETag``, since CI asks on every
build. POST quarantines a test by id (``{"test": 12}``) or by identity
(``{"repo": …, "classname": …, "name": …}``); PATCH changes reason, owner or
expiry; DELETE releases. Every change is an audit event.
"""

from __future__ import annotations

import hashlib
import json

from django.db.models import F
from django.http import Http404
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from analysis.models import Quarantine
from analysis.quarantines import (
    active_quarantines,
    change_quarantine,
    quarantine_tests,
    release_tests,
)
from ingest.access import Action
from ingest.identity import test_identity
from ingest.models import TestCase
from ingest.permissions import RepositoryScoped

_LIST_FIELDS = ("test_key", "classname", "name", "file", "reason", "owner", "expires_at")


class QuarantinePagination(CursorPagination):
    """Cursor pages in test order; CI asks for the largest page and follows ``next``."""

    ordering = "test_id"
    page_size = 1000
    page_size_query_param = "page_size"
    max_page_size = 10_000


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (400), rather than dropping them silently."""

    def to_internal_value(self, data):
        unknown = sorted(set(getattr(data, "keys", lambda: [])()) - set(self.fields))
        if unknown:
            raise ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


class QuarantineCreateSerializer(StrictSerializer):
    test = serializers.IntegerField(required=False, help_text="a test id, or give repo and names")
    repo = serializers.CharField(required=False)
    classname = serializers.CharField(required=False, allow_blank=True, default="")
    name = serializers.CharField(required=False)
    file = serializers.CharField(required=False, allow_blank=True, default="")
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    owner = serializers.CharField(required=False, allow_blank=True, default="")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate(self, data):
        if data.get("test") is None and not (data.get("repo") and data.get("name")):
            raise ValidationError("give a test id, or repo with classname and name")
        return data


class QuarantineChangeSerializer(StrictSerializer):
    reason = serializers.CharField(required=False, allow_blank=True)
    owner = serializers.CharField(required=False, allow_blank=True)
    expires_at = serializers.DateTimeField(required=False)


class QuarantineSerializer(serializers.ModelSerializer):
    repo = serializers.CharField(source="repository.full_name", read_only=True)
    test_key = serializers.CharField(source="test.identity", read_only=True)
    classname = serializers.CharField(source="test.classname", read_only=True)
    name = serializers.CharField(source="test.name", read_only=True)
    file = serializers.CharField(source="test.file", read_only=True)

    class Meta:
        model = Quarantine
        fields = [
            "test",
            "repo",
            "test_key",
            "classname",
            "name",
            "file",
            "reason",
            "owner",
            "created_by",
            "created_at",
            "expires_at",
        ]
        read_only_fields = fields


class QuarantineViewSet(
    RepositoryScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Quarantines in force. POST by test id or identity, PATCH to change, DELETE to release."""

    serializer_class = QuarantineSerializer
    pagination_class = QuarantinePagination
    read_action = Action.READ_QUARANTINE

    def get_queryset(self):
        return self.scoped(active_quarantines().select_related("repository", "test")).order_by(
            "test_id"
        )

    def list(self, request: Request, *args, **kwargs) -> Response:
        rows = self.get_queryset().values(
            "test_id",
            "reason",
            "owner",
            "expires_at",
            test_key=F("test__identity"),
            classname=F("test__classname"),
            name=F("test__name"),
            file=F("test__file"),
        )
        page = self.paginate_queryset(rows)
        results = [
            {
                "test": row["test_id"],
                **{field: row[field] for field in _LIST_FIELDS if field != "expires_at"},
                "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
            }
            for row in page
        ]
        response = self.get_paginated_response(results)
        etag = (
            '"'
            + hashlib.sha256(
                json.dumps(response.data, sort_keys=True, default=str).encode()
            ).hexdigest()[:32]
            + '"'
        )
        if etag in request.headers.get("If-None-Match", ""):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        response["ETag"] = etag
        return response

    def create(self, request: Request, *args, **kwargs) -> Response:
        given = QuarantineCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        test = self._test_to_quarantine(data)
        self.require(Action.QUARANTINE, test.repository)
        if Quarantine.objects.filter(test=test).exists():
            raise ValidationError({"test": "this test is already quarantined"})
        [quarantine] = quarantine_tests(
            tests=[test],
            created_by=request.user.get_username(),
            reason=data["reason"],
            owner=data["owner"],
            expires_at=data["expires_at"],
        )
        return Response(QuarantineSerializer(quarantine).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        quarantine = self.get_object()
        self.require(Action.QUARANTINE, quarantine.repository)
        given = QuarantineChangeSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        change_quarantine(quarantine, actor=request.user.get_username(), **given.validated_data)
        return Response(QuarantineSerializer(quarantine).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        quarantine = self.get_object()
        self.require(Action.QUARANTINE, quarantine.repository)
        release_tests(
            tests=[quarantine.test],
            actor=request.user.get_username(),
            reason=request.query_params.get("reason", ""),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _test_to_quarantine(self, data: dict) -> TestCase:
        """The test named by id or identity, among those of repositories the caller can see."""
        visible = self.access.repositories(Action.READ_QUARANTINE)
        tests = TestCase.objects.select_related("repository").filter(repository__in=visible)
        if data.get("test") is not None:
            test = tests.filter(pk=data["test"]).first()
        else:
            repository = visible.filter(full_name=data["repo"]).first()
            if repository is None:
                raise Http404(f"no repository {data['repo']}")
            identity = test_identity(data["classname"], data["file"], data["name"])[0]
            test = tests.filter(repository=repository, identity=identity).first()
        if test is None:
            raise Http404("no such test")
        return test
