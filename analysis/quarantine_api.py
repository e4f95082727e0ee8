"""REST API of quarantines: what CI reads to keep a build green, and how people set them.

``GET /api/v1/quarantine/?repo=OWNER/NAME`` lists the quarantines in force,
with each test's ``test_key`` (its identity, which a CI client computes from a
report's classname, file and name the same way), a page at a time
(``?page_size=`` up to 10,000, ``?after=`` the last test of the page before),
built as JSON by PostgreSQL, cached under the list's version and sent with an
``ETag``, since CI asks on every build. POST quarantines a test by id (``{"test": 12}``) or by identity
(``{"repo": …, "classname": …, "name": …}``); PATCH changes reason, owner or
expiry; DELETE releases. Every change is an audit event.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, Max, Min, Q
from django.http import Http404, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
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
from ingest.models import Repository, TestCase
from ingest.permissions import RepositoryScoped
from ingest.serializers import StrictSerializer

# Pages in test order (``?after=`` the last test of the page before); CI asks for
# the largest page and follows ``next``.
PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000


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
    lookup_field = "test_id"  # the test's id, as everywhere in the API
    pagination_class = None  # the list pages itself: see list()
    filter_backends: list = []  # the list is ordered by test, for its cursor and its ETag
    read_action = Action.READ_QUARANTINE

    def get_queryset(self):
        return self.scoped(active_quarantines().select_related("repository", "test")).order_by(
            "test_id"
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("repo", str, description="OWNER/NAME"),
            OpenApiParameter("page_size", int, description=f"up to {MAX_PAGE_SIZE:,}"),
            OpenApiParameter("after", int, description="the last test id of the page before"),
        ],
        responses=inline_serializer(
            "QuarantinePage",
            {
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": inline_serializer(
                    "QuarantineEntry",
                    {
                        "test": serializers.IntegerField(),
                        **{
                            f: serializers.CharField()
                            for f in ("test_key", "classname", "name", "file", "reason", "owner")
                        },
                        "expires_at": serializers.DateTimeField(allow_null=True),
                    },
                    many=True,
                ),
            },
        ),
    )
    def list(self, request: Request, *args, **kwargs) -> HttpResponse:
        """One page of the quarantines in force, in test order; ``next`` links the rest.

        CI asks on every build, so this is plain SQL into JSON, no model
        instances. The version (and ETag) comes from a one-row aggregate
        first: an unchanged list answers 304 without reading it, or from the
        cache, where the page is kept under its version.
        """
        repositories = list(
            self.scoped(Repository.objects.all(), repository_lookup="pk").values_list(
                "pk", flat=True
            )
        )
        page_size = _page_size(request.query_params.get("page_size"))
        after = _after(request.query_params.get("after"))
        now = timezone.now()
        etag = '"' + _list_version(repositories, now, page_size, after) + '"'
        if etag in request.headers.get("If-None-Match", ""):
            response = HttpResponse(status=status.HTTP_304_NOT_MODIFIED)
            response["ETag"] = etag
            return response
        # The page for this version, as any web process last built it: CI
        # fleets ask far more often than people change quarantines.
        cache_key = f"flakeguard:quarantine-page:{etag}"
        cached = cache.get(cache_key)
        if cached is None:
            cached = _list_page(repositories, now, after, page_size)
            cache.set(cache_key, cached, _PAGE_CACHE_SECONDS)
        more, last, results = cached
        next_url = None
        if more:
            query = request.query_params.copy()
            query["after"] = str(last)
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        # The rows arrive as one JSON array built by PostgreSQL.
        body = f'{{"next": {json.dumps(next_url)}, "previous": null, "results": {results}}}'
        response = HttpResponse(body, content_type="application/json")
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


def _page_size(given: str | None) -> int:
    try:
        wanted = int(given) if given else PAGE_SIZE
    except ValueError as exc:
        raise ValidationError({"page_size": ["not a number"]}) from exc
    return max(1, min(wanted, MAX_PAGE_SIZE))


def _after(given: str | None) -> int:
    try:
        return int(given) if given else 0
    except ValueError as exc:
        raise ValidationError({"after": ["not a test id"]}) from exc


_PAGE_CACHE_SECONDS = 600
_IN_FORCE = "q.repository_id = ANY(%s) AND (q.expires_at IS NULL OR q.expires_at > %s)"


def _list_version(repositories: list[int], now: datetime, page_size: int, after: int) -> str:
    """Changes whenever the page's content can: a quarantine made, changed, released or expired."""
    found = (
        Quarantine.objects.filter(repository_id__in=repositories)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .aggregate(count=Count("pk"), changed=Max("updated_at"), next_expiry=Min("expires_at"))
    )
    # Until the next expiry the set can only change through updated_at or the count.
    version = (
        f"{repositories}|{found['count']}|{found['changed']}|{found['next_expiry']}|"
        f"{page_size}|{after}"
    )
    return hashlib.sha256(version.encode()).hexdigest()[:32]


def _list_page(
    repositories: list[int], now: datetime, after: int, page_size: int
) -> tuple[bool, int | None, str]:
    """(more pages, last test id, the page as a JSON array) in one statement.

    PostgreSQL builds the JSON: turning 10,000 rows into Python objects and
    back (timestamps above all) took several times longer than the query.
    """
    if connection.vendor != "postgresql":
        return _list_page_portable(repositories, now, after, page_size)
    quarantines, tests = Quarantine._meta.db_table, TestCase._meta.db_table
    shown = "FILTER (WHERE n <= %s)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT COUNT(*) > %s, MAX(test_id) {shown},
                   COALESCE(json_agg(json_build_object(
                       'test', test_id, 'test_key', identity, 'classname', classname,
                       'name', name, 'file', file, 'reason', reason, 'owner', owner,
                       'expires_at', expires_at
                   ) ORDER BY test_id) {shown}, '[]'::json)::text
            FROM (
                SELECT q.test_id, t.identity, t.classname, t.name, t.file, q.reason, q.owner,
                       q.expires_at, ROW_NUMBER() OVER (ORDER BY q.test_id) AS n
                FROM {quarantines} q JOIN {tests} t ON t.id = q.test_id
                WHERE {_IN_FORCE} AND q.test_id > %s ORDER BY q.test_id LIMIT %s
            ) AS page
            """,
            [page_size, page_size, page_size, repositories, now, after, page_size + 1],
        )
        more, last, results = cursor.fetchone()
    return bool(more), last, results


def _list_page_portable(
    repositories: list[int], now: datetime, after: int, page_size: int
) -> tuple[bool, int | None, str]:
    """The same page through the ORM, for the embedded default's SQLite."""
    rows = list(
        active_quarantines()
        .filter(repository_id__in=repositories, test_id__gt=after)
        .order_by("test_id")
        .values(
            "test_id", "reason", "owner", "expires_at",
            identity=F("test__identity"), classname=F("test__classname"),
            test_name=F("test__name"), test_file=F("test__file"),
        )[: page_size + 1]
    )  # fmt: skip
    shown = rows[:page_size]
    results = [
        {
            "test": row["test_id"], "test_key": row["identity"], "classname": row["classname"],
            "name": row["test_name"], "file": row["test_file"], "reason": row["reason"],
            "owner": row["owner"],
            "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
        }
        for row in shown
    ]  # fmt: skip
    return len(rows) > page_size, shown[-1]["test_id"] if shown else None, json.dumps(results)
