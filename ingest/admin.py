"""Admin for stored history (repositories, run attempts, tests) and for access (grants, tokens)."""

from __future__ import annotations

from django.contrib import admin, messages

from ingest.models import ApiToken, Repository, RepositoryMember, TestCase, WorkflowRun
from ingest.tokens import revoke_token


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    list_display = ("full_name", "installation_id", "default_branch", "created_at")
    search_fields = ("full_name",)


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = (
        "repository",
        "run_id",
        "run_attempt",
        "branch",
        "event",
        "sha",
        "started_at",
        "results_count",
        "files_count",
    )
    list_filter = ("repository", "event")
    search_fields = ("sha", "branch", "=run_id")
    readonly_fields = ("file_errors", "results_pruned_at")
    date_hierarchy = "started_at"


@admin.register(TestCase)
class TestCaseAdmin(admin.ModelAdmin):
    list_display = ("__str__", "repository", "file", "first_seen_at")
    list_filter = ("repository",)
    search_fields = ("name", "classname", "file")

    def has_delete_permission(self, request, obj=None) -> bool:
        # Identities are permanent: importers cache them per process, so a
        # deleted identity would be written again under a stale key.
        return False


@admin.register(RepositoryMember)
class RepositoryMemberAdmin(admin.ModelAdmin):
    """Grants: who has which role on which repository (``manage.py grant`` does the same)."""

    list_display = ("user", "repository", "role", "created_at")
    list_filter = ("role", "repository")
    search_fields = ("user__username", "repository__full_name")
    autocomplete_fields = ("repository",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made by ``manage.py create_token``, which shows the secret once; here
    they are listed and revoked."""

    list_display = ("prefix", "name", "repository", "scope", "user", "created_at", "last_used_at",
                    "revoked_at")  # fmt: skip
    list_filter = ("scope", "repository")
    search_fields = ("name", "prefix", "repository__full_name")
    readonly_fields = ("prefix", "name", "repository", "scope", "user", "created_at",
                       "last_used_at", "revoked_at")  # fmt: skip
    actions = ("revoke",)

    def has_add_permission(self, request) -> bool:
        return False  # a token made here would have no secret anyone has seen

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            revoke_token(token)
            revoked += 1
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)
