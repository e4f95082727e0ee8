"""Channels in the admin: add one per Slack webhook or signed webhook receiver."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from notify.models import EVENT_KINDS, Channel


class ChannelForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=EVENT_KINDS,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="none ticked: every kind",
    )
    secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=True), max_length=255
    )

    class Meta:
        model = Channel
        fields = ["repository", "name", "kind", "url", "secret", "events", "enabled"]


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ("name", "repository", "kind", "enabled", "created_at")  # never the URL
    list_filter = ("kind", "enabled", "repository")
    search_fields = ("name", "repository__full_name")
