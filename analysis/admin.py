"""Admin for analysis: scored tests with quarantine actions, incidents, quarantines, scoring settings."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from analysis.models import Incident, OwnerSource, Quarantine, ScoringConfig, TestOwner, TestScore
from analysis.quarantines import quarantine_tests, release_tests
from analysis.scoring import ScoringSettings, describe_event
from analysis.services import update_scoring_settings
from analysis.tallies import with_tallies
from ingest.models import TestCase


@admin.register(TestScore)
class TestScoreAdmin(admin.ModelAdmin):
    list_display = (
        "test",
        "repository",
        "verdict",
        "score",
        "failures",
        "results",
        "flaky_since",
        "quarantined",
    )
    list_filter = ("verdict", "repository")
    search_fields = ("test__name", "test__classname", "test__file")
    ordering = ("-score",)
    list_select_related = ("test", "repository", "test__quarantine")
    actions = ("quarantine", "release")
    readonly_fields = ("evidence_lines",)
    exclude = ("evidence",)

    # Counts shown are the stored ones plus what pending tallies add.
    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        changelist.result_list = with_tallies(changelist.result_list)
        return changelist

    def get_object(self, request: HttpRequest, object_id: str, from_field=None):
        score = super().get_object(request, object_id, from_field)
        if score is not None:
            with_tallies([score])
        return score

    @admin.display(boolean=True)
    def quarantined(self, score: TestScore) -> bool:
        return hasattr(score.test, "quarantine")

    @admin.display(description="evidence")
    def evidence_lines(self, score: TestScore):
        return format_html_join("", "<div>{}</div>", ((describe_event(e),) for e in score.evidence))

    # Scores are derived: recomputed, never edited by hand.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Quarantine the selected tests")
    def quarantine(self, request: HttpRequest, queryset: QuerySet[TestScore]) -> None:
        tests = list(TestCase.objects.filter(pk__in=queryset.values("test_id")))
        quarantine_tests(tests=tests, created_by=request.user.get_username(), reason="admin")
        self.message_user(request, f"{len(tests)} test(s) quarantined.", messages.SUCCESS)

    @admin.action(description="Release the selected tests from quarantine")
    def release(self, request: HttpRequest, queryset: QuerySet[TestScore]) -> None:
        released = release_tests(
            tests=list(TestCase.objects.filter(pk__in=queryset.values("test_id")))
        )
        self.message_user(request, f"{released} test(s) released.", messages.SUCCESS)


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    """Infrastructure incidents: derived from the job loads, read-only."""

    list_display = (
        "repository",
        "github_run_id",
        "run_attempt",
        "job",
        "started_at",
        "tests_failed",
        "tests_in_job",
        "rule",
    )
    list_filter = ("repository", "rule")
    search_fields = ("job", "=github_run_id")
    ordering = ("-started_at",)
    list_select_related = ("repository",)
    date_hierarchy = "started_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Quarantine)
class QuarantineAdmin(admin.ModelAdmin):
    list_display = ("test", "repository", "created_by", "created_at", "reason")
    list_filter = ("repository",)
    search_fields = ("test__name", "test__classname", "created_by", "reason")
    raw_id_fields = ("test",)
    readonly_fields = ("repository", "created_by", "created_at")

    def save_model(self, request: HttpRequest, obj: Quarantine, form, change: bool) -> None:
        obj.repository_id = obj.test.repository_id
        if not change:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)


@admin.register(ScoringConfig)
class ScoringConfigAdmin(admin.ModelAdmin):
    list_display = ("repository", "overrides", "updated_at")
    readonly_fields = ("defaults",)

    @admin.display(description="defaults")
    def defaults(self, config: ScoringConfig) -> str:
        return json.dumps(ScoringSettings().as_json(), indent=1)

    def save_model(self, request: HttpRequest, obj: ScoringConfig, form, change: bool) -> None:
        # Saving rescores the repository with the new settings.
        job = update_scoring_settings(repository=obj.repository, overrides=obj.overrides)
        self.message_user(
            request, f"Scoring settings saved; recompute job {job.pk} queued.", messages.SUCCESS
        )


@admin.register(TestOwner)
class TestOwnerAdmin(admin.ModelAdmin):
    """Owners per test. One added here (a person's) wins over CODEOWNERS for that test."""

    list_display = ("test", "owner", "source")
    list_filter = ("source",)
    search_fields = ("owner", "test__name", "test__classname")
    raw_id_fields = ("test",)

    def get_changeform_initial_data(self, request):
        return {"source": OwnerSource.PERSON}
