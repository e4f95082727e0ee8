"""DRF glue for ``ingest.access``: querysets scoped to the caller, 404 for what they cannot see."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404
from rest_framework.exceptions import PermissionDenied

from ingest.access import Access, Action, access_for
from ingest.models import Repository


class RepositoryScoped:
    """A viewset mixin: ``scoped()`` keeps the objects of repositories the caller may read.

    ``?repo=OWNER/NAME`` narrows to one repository; one the caller cannot read
    (or that does not exist) is a 404, as its objects would be.
    """

    read_action: Action = Action.READ
    repository_lookup = "repository"

    @property
    def access(self) -> Access:
        return access_for(self.request)

    def scoped(
        self,
        queryset: QuerySet,
        action: Action | None = None,
        *,
        repository_lookup: str | None = None,
    ) -> QuerySet:
        lookup = repository_lookup or self.repository_lookup
        visible = self.access.repositories(action or self.read_action)
        queryset = queryset.filter(**{f"{lookup}__in": visible})
        repo = self.request.query_params.get("repo")
        if repo:
            repository = visible.filter(full_name=repo).first()
            if repository is None:
                raise Http404(f"no repository {repo}")
            queryset = queryset.filter(**{lookup: repository.pk})
        return queryset

    def require(self, action: Action, repository: Repository) -> None:
        """Refuse ``action`` on a repository the caller can see (403) or cannot (404)."""
        access = self.access
        if access.can(action, repository):
            return
        if access.may_see(repository):
            raise PermissionDenied(f"your access to {repository} does not allow {action}")
        raise Http404(f"no repository {repository}")
