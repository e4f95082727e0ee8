"""Admin for stored history: repositories, run attempts (with refused files), tests."""

from __future__ import annotations

from django.contrib import admin

from ingest.models import Repository, TestCase, WorkflowRun


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
    readonly_fields = ("file_errors",)
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
