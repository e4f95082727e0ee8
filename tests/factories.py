"""factory-boy factories for stored history and jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import factory
from django.utils import timezone

from ingest.models import Repository, WorkflowRun
from jobs.models import Job, JobKind, JobState


class RepositoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Repository
        django_get_or_create = ("full_name",)

    full_name = factory.Sequence(lambda n: f"acme/repo{n}")


class WorkflowRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WorkflowRun

    repository = factory.SubFactory(RepositoryFactory)
    run_id = factory.Sequence(lambda n: 1000 + n)
    run_attempt = 1
    sha = factory.Sequence(lambda n: f"{n:040x}")
    branch = "main"
    event = "push"
    workflow = "ci"
    started_at = factory.Sequence(lambda n: datetime(2026, 9, 1, tzinfo=UTC) + timedelta(hours=n))


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    kind = JobKind.INGEST_RUN
    dedup_key = factory.Sequence(lambda n: f"test:{n}")
    payload = factory.LazyFunction(dict)
    next_attempt_at = factory.LazyFunction(timezone.now)
    dispatched_at = factory.LazyFunction(timezone.now)
    max_attempts = 3

    class Params:
        # A worker holds it: claimed once, lease still running.
        running = factory.Trait(
            state=JobState.RUNNING,
            attempts=1,
            started_at=factory.LazyFunction(timezone.now),
            lease_expires_at=factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=35)),
        )
        # In the dead-letter queue after using up its attempts.
        dead = factory.Trait(
            state=JobState.DEAD,
            attempts=3,
            last_error="TransientJobError: upstream kept timing out",
            finished_at=factory.LazyFunction(timezone.now),
        )
        succeeded = factory.Trait(
            state=JobState.SUCCEEDED,
            attempts=1,
            result=factory.LazyFunction(lambda: {"results_stored": 1}),
            finished_at=factory.LazyFunction(timezone.now),
        )
