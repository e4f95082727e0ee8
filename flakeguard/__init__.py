"""FlakeGuard: finds the flaky tests in a team's CI.

Importing the package loads the Celery app so that ``shared_task`` decorators
bind to it in every process (web, worker, Beat, management commands).
"""

from .celery import app as celery_app

__all__ = ["celery_app"]
