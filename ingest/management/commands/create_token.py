"""``manage.py create_token --repo OWNER/NAME --scope upload|read|write [--name N] [--user U]``.

Prints the token alone on stdout, once (only its hash is kept), so that
``TOKEN=$(python manage.py create_token …)`` captures exactly the secret.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ingest.models import Repository, TokenScope
from ingest.tokens import create_token


class Command(BaseCommand):
    help = "Create an API token limited to one repository and scope; prints it once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repo", required=True, metavar="OWNER/NAME")
        parser.add_argument("--scope", required=True, choices=TokenScope.values)
        parser.add_argument("--name", default="", help="what the token is for, e.g. 'ci'")
        parser.add_argument(
            "--user", default=None, help="a personal token: it acts as this user as well"
        )

    def handle(self, *args, repo: str, scope: str, name: str, user: str | None, **options):
        repository = Repository.objects.filter(full_name=repo).first()
        if repository is None:
            raise CommandError(f"no repository {repo!r}; add it first (add_repo or an import)")
        owner = None
        if user is not None:
            owner = get_user_model().objects.filter(username=user).first()
            if owner is None:
                raise CommandError(f"no user named {user!r}")
        token, secret = create_token(repository=repository, scope=scope, name=name, user=owner)
        self.stderr.write(f"token {token.prefix}… ({scope} on {repo}); it is shown only now")
        self.stdout.write(secret)
