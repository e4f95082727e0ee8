"""The one wait loop of the commands: progress as jobs move, and a database blip waited out."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from jobs.models import Job, JobState
from jobs.waiting import wait_for_jobs
from tests.factories import JobFactory


def dsn() -> str:
    params = connection.get_connection_params()
    return psycopg.conninfo.make_conninfo(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "dbname", "password")}
    )


@pytest.mark.django_db(transaction=True)
def test_waiting_carries_on_through_a_lost_database_connection() -> None:
    job = JobFactory(state=JobState.RUNNING)
    seen: list[str] = []

    def on_update(jobs: dict[int, Job]) -> None:
        seen.append(jobs[job.pk].state)
        if len(seen) == 1:
            # The server drops this connection (as a restart would) and, meanwhile,
            # a worker finishes the job.
            pid = connection.connection.info.backend_pid
            with psycopg.connect(dsn(), autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", [pid])
                other.execute(
                    f"UPDATE {Job._meta.db_table} SET state = 'succeeded', finished_at = %s "
                    "WHERE id = %s",
                    [timezone.now(), job.pk],
                )

    jobs = wait_for_jobs([job.pk], on_update=on_update, poll_seconds=0.05)

    assert seen == [JobState.RUNNING, JobState.SUCCEEDED]
    assert jobs[job.pk].state == JobState.SUCCEEDED


@pytest.mark.django_db
def test_waiting_reports_every_read_and_says_when_nothing_moves() -> None:
    job = JobFactory(state=JobState.PENDING)
    reads: list[int] = []
    quiet: list[int] = []

    def on_update(jobs: dict[int, Job]) -> None:
        reads.append(len(jobs))
        if len(reads) == 4:
            Job.objects.filter(pk=job.pk).update(state=JobState.DEAD)

    wait_for_jobs(
        [job.pk], on_update=on_update, on_quiet=quiet.append, poll_seconds=0.01, quiet_seconds=0
    )

    assert reads == [1] * 5  # the fifth read finds the job dead and ends the wait
    assert quiet and set(quiet) == {1}
