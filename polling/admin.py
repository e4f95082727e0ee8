"""Admin for GitHub: repositories with their GitHub settings, poll and backfill actions, deliveries."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from flakeguard.jobs import enqueue_job
from flakeguard.models import JobKind
from ingest.admin import RepositoryAdmin
from ingest.models import Repository
from polling.models import GitHubSettings, WebhookDelivery
from polling.services import enqueue_backfill


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
    actions = ("poll_now", "backfill_30_days")

    def save_model(self, request: HttpRequest, obj: Repository, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        GitHubSettings.objects.get_or_create(repository=obj)  # same as add_repo

    @admin.action(description="Poll GitHub now")
    def poll_now(self, request: HttpRequest, queryset: QuerySet[Repository]) -> None:
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
        for repository in queryset:
            enqueue_job(
                kind=JobKind.POLL_REPO,
                dedup_key=f"poll:{repository.pk}:admin:{stamp}",
                payload={"repository_id": repository.pk},
            )
        self.message_user(request, f"{queryset.count()} poll job(s) queued.", messages.SUCCESS)

    @admin.action(description="Backfill the last 30 days from GitHub")
    def backfill_30_days(self, request: HttpRequest, queryset: QuerySet[Repository]) -> None:
        since = timezone.now() - timedelta(days=30)
        jobs = [enqueue_backfill(repository=r, since=since)[0].pk for r in queryset]
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
