"""``manage.py grant USERNAME OWNER/NAME --role viewer|maintainer|admin``."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ingest.access import grant
from ingest.models import Repository, Role


class Command(BaseCommand):
    help = "Give a user a role on a repository (replacing the role they had there)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("repo", metavar="OWNER/NAME")
        parser.add_argument("--role", required=True, choices=Role.values)

    def handle(self, *args, username: str, repo: str, role: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        repository = Repository.objects.filter(full_name=repo).first()
        if repository is None:
            raise CommandError(f"no repository {repo!r}; add it first (add_repo or an import)")
        grant(user=user, repository=repository, role=role)
        self.stderr.write(f"{username} is now {role} of {repo}")
