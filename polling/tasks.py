"""Celery tasks of the polling queue: thin wrappers over the job runner, and Beat's fan-out."""

from __future__ import annotations
