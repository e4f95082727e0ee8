"""Cursor pages for every API list: stable under inserts, and capped so no page is unbounded."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class CappedCursorPagination(CursorPagination):
    """``?page_size=`` up to 1,000 (100 by default); follow ``next`` for the rest.

    A list's order comes from its ``?ordering=`` or the view's ``ordering``;
    the cursor walks it, so rows written meanwhile neither repeat nor go missing.
    """

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering = "-pk"
