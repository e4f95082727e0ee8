"""The one way to declare a job task: ``@job_task(JobKind.X, queue=Queue.Y)``.

The decorator binds a kind to the service that runs it, the queue it runs on
and the Celery task that carries its id, in one place:

    @job_task(JobKind.INGEST_RUN, queue=Queue.RUNS_INGEST)
    def ingest_run(job: Job) -> dict[str, Any]:
        return services.ingest_run_job(job)

The task is named ``<app>.<kind>`` (``ingest.ingest_run``) and does nothing but
hand its job id and the service to ``run_job`` (through ``jobs.delivery``, which
decides what a delivery that cannot run leaves behind), which owns claiming,
leases, retries and dead-lettering. Dispatch looks the kind up here, so a kind that no
app declared cannot be enqueued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Task, shared_task

from jobs.errors import JobFailed
from jobs.models import Job
from jobs.queues import Queue

JobService = Callable[[Job], dict[str, Any] | None]


@dataclass(frozen=True)
class JobType:
    kind: str
    queue: Queue
    task: Task
    service: JobService

    @property
    def task_name(self) -> str:
        return self.task.name


_TYPES: dict[str, JobType] = {}


class UnknownJobKind(LookupError):
    """No app declared a task for this kind (its module was not imported, or a typo)."""


def job_task(kind: str, *, queue: Queue) -> Callable[[JobService], JobService]:
    """Declare ``service`` as the body of every job of ``kind``, run on ``queue``."""

    def declare(service: JobService) -> JobService:
        if kind in _TYPES and _TYPES[kind].service is not service:
            raise ValueError(f"job kind {kind!r} is already declared by {_TYPES[kind].task_name}")
        app_label = service.__module__.split(".", 1)[0]

        def run(task: Task, job_id: int, recheck: bool = False) -> None:
            from jobs.delivery import run_delivered

            run_delivered(task, job_id, service, kind=kind, recheck=recheck)

        run.__name__ = run.__qualname__ = f"{kind}_task"
        run.__doc__ = f"Run job ``{kind}`` {{job_id}} with {service.__module__}.{service.__name__}."
        # ``throws``: an expected failure, logged in one line without a traceback.
        task = shared_task(
            name=f"{app_label}.{kind}", ignore_result=True, bind=True, throws=(JobFailed,)
        )(run)
        _TYPES[kind] = JobType(kind=kind, queue=queue, task=task, service=service)
        return service

    return declare


def job_type(kind: str) -> JobType:
    try:
        return _TYPES[kind]
    except KeyError:
        raise UnknownJobKind(
            f"no task is declared for job kind {kind!r}; known: {', '.join(sorted(_TYPES))}"
        ) from None


def declared_kinds() -> frozenset[str]:
    return frozenset(_TYPES)


def route_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict[str, str] | None:
    """Celery's router: a job task goes to the queue its kind was declared on.

    Dispatch names the queue anyway; this covers a task sent by name alone
    (``celery call``, Flower's "apply"), which would otherwise land on the
    default queue.
    """
    for declared in _TYPES.values():
        if declared.task_name == name:
            return {"queue": declared.queue.value}
    return None
