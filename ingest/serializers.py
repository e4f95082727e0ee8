"""What every API input serializer shares."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.exceptions import ValidationError


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (400), rather than dropping them silently.

    ``also_accepted`` names parts of the request read elsewhere (an upload's files).
    """

    also_accepted: frozenset[str] = frozenset()

    def to_internal_value(self, data):
        given = set(data.keys()) if hasattr(data, "keys") else set()
        unknown = sorted(given - set(self.fields) - self.also_accepted)
        if unknown:
            raise ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)
