"""``/api/v1/tokens/``: the API tokens of the repositories the caller administers; DELETE revokes.

A token's secret is never shown here (only ``create_token`` prints it, once).
"""

from __future__ import annotations

from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from ingest.access import Action
from ingest.models import ApiToken
from ingest.permissions import RepositoryScoped
from ingest.tokens import revoke_token


class TokenSerializer(serializers.ModelSerializer):
    repo = serializers.CharField(source="repository.full_name")
    user = serializers.CharField(source="user.username", default=None)

    class Meta:
        model = ApiToken
        fields = [
            "id", "name", "prefix", "repo", "scope", "user", "created_at", "last_used_at",
            "revoked_at",
        ]  # fmt: skip


class TokenViewSet(
    RepositoryScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Tokens, newest first; ``?repo=OWNER/NAME`` narrows. DELETE revokes (kept, marked revoked)."""

    serializer_class = TokenSerializer
    read_action = Action.MANAGE
    filterset_fields = ["scope"]
    ordering = ("-created_at", "-id")
    ordering_fields = ["created_at", "last_used_at"]

    def get_queryset(self):
        return self.scoped(ApiToken.objects.select_related("repository", "user"))

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        revoke_token(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
