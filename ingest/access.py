"""Who may see and do what: roles and token scopes turned into per-repository permissions.

Every adapter (API view, dashboard page, command) asks ``access_for`` what the
caller may do and filters by ``repositories(action)``: an object of a
repository the caller cannot read is answered as absent (404), never as
forbidden, so that the answer does not even confirm it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.db.models import QuerySet

from ingest.models import ApiToken, Repository, RepositoryMember, Role, TokenScope


class Action(StrEnum):
    READ = "read"  # tests, runs, incidents, uploads, the quarantine list
    READ_QUARANTINE = "read_quarantine"  # the quarantine list alone
    UPLOAD = "upload"
    QUARANTINE = "quarantine"
    SETTINGS = "settings"
    MANAGE = "manage"  # grants and tokens


_READING = frozenset({Action.READ, Action.READ_QUARANTINE})
ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    Role.VIEWER: _READING,
    Role.MAINTAINER: _READING | {Action.UPLOAD, Action.QUARANTINE, Action.SETTINGS},
    Role.ADMIN: frozenset(Action),
}
SCOPE_ACTIONS: dict[str, frozenset[Action]] = {
    TokenScope.UPLOAD: frozenset({Action.UPLOAD, Action.READ_QUARANTINE}),
    TokenScope.READ: _READING,
    TokenScope.WRITE: _READING | {Action.QUARANTINE},
}


@dataclass(frozen=True)
class TokenPrincipal:
    """The caller behind a repository token that acts for no user."""

    token: ApiToken
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_staff: bool = False
    is_superuser: bool = False
    is_active: bool = True
    pk: None = None
    id: None = None

    def get_username(self) -> str:
        return f"token:{self.token.name or self.token.prefix}"

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False


@dataclass(frozen=True)
class Access:
    """What one caller may do: a user's grants, narrowed by the token they came with."""

    user: object  # a django.contrib.auth user, or a TokenPrincipal
    token: ApiToken | None = None

    def repositories(self, action: Action) -> QuerySet[Repository]:
        """The repositories on which the caller may take ``action``."""
        queryset = Repository.objects.all()
        if self.token is not None:
            if action not in SCOPE_ACTIONS[self.token.scope]:
                return queryset.none()
            queryset = queryset.filter(pk=self.token.repository_id)
            if self.token.user_id is None:
                return queryset
        user = self.user
        if not getattr(user, "is_authenticated", False):
            return queryset.none()
        if getattr(user, "is_staff", False) and getattr(user, "is_active", False):
            return queryset
        roles = [role for role, actions in ROLE_ACTIONS.items() if action in actions]
        return queryset.filter(members__user=user, members__role__in=roles)

    def can(self, action: Action, repository: Repository) -> bool:
        return self.repositories(action).filter(pk=repository.pk).exists()

    def may_see(self, repository: Repository) -> bool:
        """Whether the caller may know the repository exists (any action at all): every
        role and every scope reads the quarantine list, so that one query says it."""
        return self.can(Action.READ_QUARANTINE, repository)


def access_for(request: object) -> Access:
    """The access of a request (Django's or DRF's): its user and the token it carried."""
    auth = getattr(request, "auth", None)
    return Access(
        user=getattr(request, "user", None), token=auth if isinstance(auth, ApiToken) else None
    )


def grant(*, user: object, repository: Repository, role: str) -> RepositoryMember:
    """Give the user this role on the repository (replacing the one they had)."""
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    member, _ = RepositoryMember.objects.update_or_create(
        user=user, repository=repository, defaults={"role": role}
    )
    return member
