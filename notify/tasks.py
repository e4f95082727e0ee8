"""The notifier's job tasks, on the polling queue with the other outbound HTTP."""

from __future__ import annotations

from typing import Any

from jobs.models import Job, JobKind
from jobs.queues import Queue
from jobs.registry import job_task
from notify import services


@job_task(JobKind.TEST_EVENT, queue=Queue.POLLING)
def test_event(job: Job) -> dict[str, Any]:
    return services.fan_out(job)


@job_task(JobKind.DELIVER_NOTIFICATION, queue=Queue.POLLING)
def deliver_notification(job: Job) -> dict[str, Any]:
    return services.deliver(job)
