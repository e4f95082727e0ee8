"""Admin for GitHub: repositories with their settings, poll and backfill actions, artifacts, check runs, deliveries."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ingest.admin import RepositoryAdmin
from ingest.models import Repository
from polling.backfill import enqueue_backfill
from polling.discovery import enqueue_poll
from polling.models import Artifact, CheckRun, GitHubSettings, WebhookDelivery
from polling.repositories import follow_repository


class GitHubSettingsInline(admin.StackedInline):
    model = GitHubSettings
    can_delete = False
    readonly_fields = ("last_polled_at", "next_poll_at", "last_poll_error")
    fields = (
        "artifact_pattern",
        "polling_enabled",
        "poll_interval_seconds",
        "conclusion_policy",
        "last_polled_at",
        "next_poll_at",
        "last_poll_error",
    )


admin.site.unregister(Repository)


@admin.register(Repository)
class GitHubRepositoryAdmin(RepositoryAdmin):
    """Repositories as ingest shows them, plus what FlakeGuard does with them on GitHub."""

    inlines = [GitHubSettingsInline]
    actions = ("poll_now", "backfill_recent")

    def save_model(self, request: HttpRequest, obj: Repository, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # Following a repository added here brings its history, as with add_repo.
        follow_repository(repository=obj)

    @admin.action(description="Poll GitHub now")
    def poll_now(self, request: HttpRequest, queryset: QuerySet[Repository]) -> None:
        jobs = [enqueue_poll(repository=r, cause=f"admin:{request.user.pk}").pk for r in queryset]
        self.message_user(request, f"Poll job(s) {jobs} queued.", messages.SUCCESS)

    @admin.action(description="Backfill the recent history from GitHub")
    def backfill_recent(self, request: HttpRequest, queryset: QuerySet[Repository]) -> None:
        jobs = [enqueue_backfill(repository=r)[0].pk for r in queryset]
        self.message_user(request, f"Backfill job(s) {jobs} queued.", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("delivery_id", "event", "action", "repository", "received_at")
    list_filter = ("event",)
    search_fields = ("delivery_id", "repository")
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    """GitHub artifacts seen, and what became of each (never downloaded twice)."""

    list_display = (
        "name",
        "repository",
        "run_id",
        "run_attempt",
        "state",
        "size_bytes",
        "created_at",
    )
    list_filter = ("state", "repository")
    search_fields = ("name", "=run_id", "=artifact_id")
    readonly_fields = [f.name for f in Artifact._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(CheckRun)
class CheckRunAdmin(admin.ModelAdmin):
    """The FlakeGuard check run of each commit, and why GitHub refused one."""

    list_display = (
        "repository",
        "head_sha",
        "state",
        "conclusion",
        "new_failures",
        "known_flaky_failures",
        "published_at",
    )
    list_filter = ("state", "conclusion", "repository")
    search_fields = ("head_sha",)
    readonly_fields = [f.name for f in CheckRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
