"""Admin for the job table: dead jobs listed with their error, and a retry action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs.models import Job, JobState
from jobs.sweeper import retry_jobs


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "dedup_key", "state", "attempts", "next_attempt_at", "updated_at")
    list_filter = ("state", "kind")
    search_fields = ("dedup_key",)
    readonly_fields = [f.name for f in Job._meta.fields]
    actions = ["retry_selected"]
    ordering = ("-updated_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Jobs are made by enqueue_job alongside their cause; every field here is
        # read-only, so the add form could only save a row with no due time.
        return False

    @admin.action(description="Retry selected dead jobs")
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = list(queryset.filter(state=JobState.DEAD).values_list("pk", flat=True))
        count = retry_jobs(ids)
        self.message_user(request, f"{count} dead job(s) sent back to the queue.", messages.SUCCESS)
