"""Job-table metrics on /metrics."""

from __future__ import annotations

import pytest

from jobs.models import JobState
from tests.factories import JobFactory


@pytest.mark.django_db
def test_metrics_report_jobs_by_kind_and_state(client, settings) -> None:
    settings.FLAKEGUARD_METRICS_TOKEN = "scrape-token-1234"
    JobFactory.create_batch(2, state=JobState.DEAD)
    JobFactory(state=JobState.PENDING)

    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-1234").content.decode()

    assert 'flakeguard_jobs{kind="ingest_run",state="dead"} 2.0' in body
    assert 'flakeguard_jobs{kind="ingest_run",state="pending"} 1.0' in body
    assert 'flakeguard_oldest_pending_job_age_seconds{kind="ingest_run"}' in body
    assert 'flakeguard_dead_jobs{kind="ingest_run"} 2.0' in body
