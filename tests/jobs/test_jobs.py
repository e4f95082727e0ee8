"""The durable job table: enqueue, dispatch, claim, run, retry, sweep, drain.

Everything runs against real PostgreSQL (row locks, SKIP LOCKED, unique
constraints) and real Redis: with REDIS_URL set, ``dispatch`` publishes Celery
messages to Redis lists named after the queues, and these tests read them
back. Time moves through the explicit ``now=`` of ``claim_job`` and
``sweep_jobs``; service functions are defined here, through the documented
seam ``run_job(job_id, service)``.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import redis
from django.db import OperationalError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from jobs.dispatch import dispatch, drain_jobs, enqueue_job
from jobs.errors import PermanentJobError, TransientJobError
from jobs.models import Job, JobKind, JobState
from jobs.queues import Queue
from jobs.registry import UnknownJobKind, declared_kinds, job_task, job_type
from jobs.runner import backoff_seconds, claim_job, run_job
from jobs.sweeper import broker_restarted, retry_jobs, sweep_jobs
from tests.factories import JobFactory

INGEST_QUEUE = Queue.RUNS_INGEST.value


# --- the broker, read back ------------------------------------------------------


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    """The test Redis, emptied, so every message seen was sent by this test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def queued_job_ids(broker: redis.Redis, queue: str = INGEST_QUEUE) -> list[int]:
    """Job ids of the Celery messages waiting in ``queue``, oldest first.

    Each list item is kombu's JSON envelope; its base64 body is Celery's
    protocol-2 triple ``[args, kwargs, embed]``, whose only arg is the job id.
    """
    ids = []
    for raw in reversed(broker.lrange(queue, 0, -1)):  # LPUSH puts the newest first
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs, _embed = json.loads(body)
        assert kwargs == {}, "only the job id crosses the broker"
        ids.append(args[0])
    return ids


def task_names(broker: redis.Redis, queue: str = INGEST_QUEUE) -> list[str]:
    return [json.loads(raw)["headers"]["task"] for raw in broker.lrange(queue, 0, -1)]


def wait_until_a_query_waits_for_a_lock() -> None:
    with connection.cursor() as cursor:
        for _ in range(3000):
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # stats are cached per transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("no query ever waited for the row lock")


# --- a task of our own, for the paths that run jobs in-process -------------------

# A job kind of the tests' own: declaring it takes the one decorator, nothing else.
SCRIPTED_KIND = "tests_scripted"


@job_task(SCRIPTED_KIND, queue=Queue.POLLING)
def scripted_service(job: Job) -> dict[str, Any]:
    """Succeeds, or fails the way ``payload["fail"]`` says."""
    if job.payload.get("fail") == "transient":
        raise TransientJobError("remote busy")
    return {"ran": job.pk}


@pytest.fixture
def scripted_kind() -> str:
    return SCRIPTED_KIND


@pytest.fixture
def job_settings(settings: Any) -> Any:
    """Pin the job knobs these tests compute with, whatever the environment says."""
    settings.FLAKEGUARD_JOB_BACKOFF_BASE_SECONDS = 30
    settings.FLAKEGUARD_JOB_BACKOFF_MAX_SECONDS = 3600
    settings.FLAKEGUARD_JOB_LEASE_SECONDS = 35 * 60
    settings.FLAKEGUARD_JOB_REDISPATCH_SECONDS = 600
    return settings


# --- enqueue and dispatch ---------------------------------------------------------


@pytest.mark.django_db
def test_duplicate_enqueue_creates_one_job(broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first, first_created = enqueue_job(
            kind=JobKind.INGEST_RUN, dedup_key="ingest:acme/shop:812:1", payload={"n": 1}
        )
        second, second_created = enqueue_job(
            kind=JobKind.INGEST_RUN, dedup_key="ingest:acme/shop:812:1", payload={"n": 2}
        )

    assert (first_created, second_created) == (True, False)
    assert second.pk == first.pk
    assert Job.objects.count() == 1
    job = Job.objects.get()
    assert job.state == JobState.PENDING
    assert job.payload == {"n": 1}  # the first cause wins
    assert queued_job_ids(broker) == [job.pk]


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_enqueues_of_one_key_create_one_job_and_one_message(broker):
    threads_count = 10
    start = threading.Barrier(threads_count)
    outcomes: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def enqueue() -> None:
        try:
            start.wait(timeout=60)
            # As a webhook handler would: the job is written in the request's transaction.
            with transaction.atomic():
                job, created = enqueue_job(
                    kind=JobKind.INGEST_RUN, dedup_key="ingest:acme/shop:900:1"
                )
            outcomes.append((job.pk, created))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    job = Job.objects.get()
    assert sorted(outcomes) == sorted([(job.pk, False)] * (threads_count - 1) + [(job.pk, True)])
    assert queued_job_ids(broker) == [job.pk]


@pytest.mark.django_db(transaction=True)
def test_enqueue_dispatches_to_the_kinds_queue_only_after_commit(broker):
    with transaction.atomic():
        job, _ = enqueue_job(kind=JobKind.INGEST_RUN, dedup_key="ingest:acme/shop:1:1")
        assert broker.llen(INGEST_QUEUE) == 0, "a worker could look for an uncommitted row"

    assert queued_job_ids(broker) == [job.pk]
    assert task_names(broker) == ["ingest.ingest_run"]


@pytest.mark.django_db(transaction=True)
def test_rolled_back_enqueue_sends_nothing(broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_job(kind=JobKind.INGEST_RUN, dedup_key="ingest:acme/shop:2:1")
        raise RuntimeError("the cause failed to commit")

    assert Job.objects.count() == 0
    assert broker.llen(INGEST_QUEUE) == 0


@pytest.mark.django_db
def test_dispatch_sends_each_kind_to_its_own_queue(broker):
    for kind in declared_kinds():
        declared = job_type(kind)
        broker.flushdb()
        dispatch(41, kind)
        assert queued_job_ids(broker, declared.queue.value) == [41], kind
        assert task_names(broker, declared.queue.value) == [declared.task_name]


def test_every_job_kind_is_declared_by_an_app_with_its_queue():
    assert declared_kinds() >= set(JobKind)
    assert {kind: (job_type(kind).task_name, job_type(kind).queue) for kind in JobKind} == {
        JobKind.INGEST_RUN: ("ingest.ingest_run", Queue.RUNS_INGEST),
        JobKind.ANALYZE_RUN: ("analysis.analyze_run", Queue.RUNS_ANALYZE),
        JobKind.RECOMPUTE_REPO: ("analysis.recompute_repo", Queue.TESTS_RECOMPUTE),
        JobKind.SETTLE_TALLIES: ("analysis.settle_tallies", Queue.TESTS_RECOMPUTE),
        JobKind.POLL_REPO: ("polling.poll_repo", Queue.POLLING),
        JobKind.BACKFILL_REPO: ("polling.backfill_repo", Queue.POLLING),
        JobKind.VERDICTS_CHANGED: ("polling.verdicts_changed", Queue.RUNS_ANALYZE),
        JobKind.TEST_EVENT: ("notify.test_event", Queue.POLLING),
        JobKind.DELIVER_NOTIFICATION: ("notify.deliver_notification", Queue.POLLING),
    }


@pytest.mark.django_db
def test_a_kind_no_app_declared_cannot_be_enqueued():
    with pytest.raises(UnknownJobKind, match="no task is declared for job kind 'typo_kind'"):
        enqueue_job(kind="typo_kind", dedup_key="typo:1")
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_kind_declared_by_the_decorator_alone_runs_through_the_broker(broker):
    job, _ = enqueue_job(kind=SCRIPTED_KIND, dedup_key="scripted:broker")
    dispatch(job.pk, SCRIPTED_KIND)

    assert queued_job_ids(broker, Queue.POLLING.value) == [job.pk]
    assert task_names(broker, Queue.POLLING.value) == ["tests.tests_scripted"]


@pytest.mark.django_db
def test_embedded_default_runs_the_job_in_process_after_commit(
    settings, scripted_kind, django_capture_on_commit_callbacks, broker
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    with django_capture_on_commit_callbacks(execute=True):
        job, _ = enqueue_job(kind=scripted_kind, dedup_key="poll:acme/shop")
        assert Job.objects.get(pk=job.pk).state == JobState.PENDING

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
    assert job.result == {"ran": job.pk}
    assert broker.llen(Queue.POLLING.value) == 0


# --- claim --------------------------------------------------------------------------


@pytest.mark.django_db
def test_claim_moves_pending_job_to_running_with_a_lease(job_settings):
    job = JobFactory()
    now = timezone.now()

    claimed = claim_job(job.pk, now=now)

    assert claimed is not None
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert job.attempts == 1
    assert job.started_at == now
    assert job.lease_expires_at == now + timedelta(seconds=35 * 60)
    assert (claimed.state, claimed.attempts) == (job.state, job.attempts)


@pytest.mark.django_db
def test_second_claim_of_running_job_with_live_lease_returns_none():
    job = JobFactory()
    now = timezone.now()
    assert claim_job(job.pk, now=now) is not None

    assert claim_job(job.pk, now=now + timedelta(seconds=10)) is None

    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.RUNNING, 1)


@pytest.mark.django_db(transaction=True)
def test_claim_skips_a_job_locked_by_another_transaction_instead_of_waiting():
    job = JobFactory()
    outcome: dict[str, Any] = {}

    def claim_from_another_worker() -> None:
        try:
            with connection.cursor() as cursor:
                # Without SKIP LOCKED the claim would wait; make waiting fail loudly.
                cursor.execute("SET lock_timeout = '10s'")
            outcome["claimed"] = claim_job(job.pk)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    with transaction.atomic():
        Job.objects.select_for_update().get(pk=job.pk)  # another worker mid-claim
        other = threading.Thread(target=claim_from_another_worker)
        other.start()
        other.join()

    assert outcome == {"claimed": None}
    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.PENDING, 0)
    assert claim_job(job.pk) is not None  # free again once the lock is gone


@pytest.mark.django_db
def test_claim_of_pending_job_not_yet_due_returns_none():
    now = timezone.now()
    job = JobFactory(next_attempt_at=now + timedelta(seconds=60))

    assert claim_job(job.pk, now=now) is None

    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.PENDING, 0)
    assert claim_job(job.pk, now=now + timedelta(seconds=60)) is not None


@pytest.mark.django_db
@pytest.mark.parametrize("trait", ["succeeded", "dead"])
def test_claim_of_finished_job_returns_none(trait):
    job = JobFactory(**{trait: True})
    before = (job.state, job.attempts)

    assert claim_job(job.pk) is None

    job.refresh_from_db()
    assert (job.state, job.attempts) == before


@pytest.mark.django_db
def test_claim_of_unknown_job_returns_none():
    assert claim_job(987_654) is None


@pytest.mark.django_db
def test_claim_of_expired_lease_job_on_its_last_attempt_marks_it_dead(job_settings):
    now = timezone.now()
    job = JobFactory(
        running=True, attempts=3, max_attempts=3, lease_expires_at=now - timedelta(seconds=1)
    )

    assert claim_job(job.pk, now=now) is None

    job.refresh_from_db()
    assert job.state == JobState.DEAD
    assert job.attempts == 3
    assert job.lease_expires_at is None
    assert job.finished_at == now
    assert "worker lost" in job.last_error


# --- run ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_successful_run_stores_the_result_and_succeeds():
    job = JobFactory(payload={"repo": "acme/shop"})
    seen: list[dict[str, Any]] = []

    def service(claimed: Job) -> dict[str, Any]:
        seen.append({"state": claimed.state, "payload": claimed.payload})
        return {"results_stored": 42}

    run_job(job.pk, service)

    assert seen == [{"state": JobState.RUNNING, "payload": {"repo": "acme/shop"}}]
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
    assert job.result == {"results_stored": 42}
    assert job.attempts == 1
    assert job.lease_expires_at is None
    assert job.finished_at is not None
    assert job.last_error == ""


@pytest.mark.django_db
def test_service_returning_none_succeeds_with_an_empty_result():
    job = JobFactory()

    run_job(job.pk, lambda claimed: None)

    job.refresh_from_db()
    assert (job.state, job.result) == (JobState.SUCCEEDED, {})


@pytest.mark.django_db
def test_result_that_cannot_be_stored_marks_the_job_dead_instead_of_leaving_it_running():
    job = JobFactory()

    run_job(job.pk, lambda claimed: {"when": object()})

    job.refresh_from_db()
    assert job.state == JobState.DEAD
    assert "result could not be recorded" in job.last_error


@pytest.mark.django_db
def test_running_a_job_twice_runs_the_service_once():
    job = JobFactory()
    calls: list[int] = []

    def service(claimed: Job) -> dict[str, Any]:
        calls.append(claimed.pk)
        return {"call": len(calls)}

    run_job(job.pk, service)
    run_job(job.pk, service)  # a duplicate delivery of the same message

    assert calls == [job.pk]
    job.refresh_from_db()
    assert (job.state, job.attempts, job.result) == (JobState.SUCCEEDED, 1, {"call": 1})


@pytest.mark.django_db
@pytest.mark.parametrize(
    "error",
    [
        TransientJobError("GitHub rate limit, resets in 40s"),
        ConnectionError("connection reset by peer"),
        OperationalError("could not serialize access due to concurrent update"),
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379."),
    ],
    ids=lambda e: f"{type(e).__module__}.{type(e).__name__}",
)
def test_transient_failure_schedules_a_retry_within_the_backoff_window(job_settings, error):
    job = JobFactory(max_attempts=3)

    def service(claimed: Job) -> None:
        raise error

    before = timezone.now()
    run_job(job.pk, service)
    after = timezone.now()

    job.refresh_from_db()
    assert job.state == JobState.PENDING
    assert job.attempts == 1
    # First retry: nominal 30 s, jittered into [15 s, 30 s].
    assert before + timedelta(seconds=15) <= job.next_attempt_at <= after + timedelta(seconds=30)
    assert str(error) in job.last_error
    assert type(error).__name__ in job.last_error
    assert job.dispatched_at is None  # the sweeper sends it when it comes due
    assert job.lease_expires_at is None
    assert job.finished_at is None


@pytest.mark.django_db
def test_last_transient_failure_marks_the_job_dead():
    job = JobFactory(max_attempts=2)
    calls: list[int] = []

    def service(claimed: Job) -> None:
        calls.append(claimed.attempts)
        raise TransientJobError(f"timeout on attempt {claimed.attempts}")

    run_job(job.pk, service)
    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.PENDING, 1)

    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())  # the retry is due
    run_job(job.pk, service)

    assert calls == [1, 2]
    job.refresh_from_db()
    assert job.state == JobState.DEAD
    assert job.attempts == 2
    assert "timeout on attempt 2" in job.last_error
    assert job.finished_at is not None
    run_job(job.pk, service)
    assert calls == [1, 2], "a dead job waits for an operator"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("error", "text"),
    [
        (PermanentJobError("malformed payload: no 'run'"), "PermanentJobError: malformed payload"),
        (KeyError("files"), "KeyError: 'files'"),
    ],
    ids=["permanent", "unexpected"],
)
def test_permanent_or_unexpected_failure_marks_the_job_dead_at_once(error, text):
    job = JobFactory(max_attempts=5)

    def service(claimed: Job) -> None:
        raise error

    run_job(job.pk, service)

    job.refresh_from_db()
    assert job.state == JobState.DEAD
    assert job.attempts == 1
    assert text in job.last_error
    assert job.lease_expires_at is None
    assert job.finished_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("outcome", ["succeeds", "fails transiently", "fails permanently"], ids=str)
def test_worker_whose_lease_was_taken_over_leaves_the_new_claim_alone(job_settings, outcome):
    # The first worker stalls past its lease; the sweeper hands the job to a
    # second worker. When the first one finally returns, its outcome must not
    # overwrite the state of the attempt that now owns the job.
    job = JobFactory(max_attempts=3)
    takeover: list[Job | None] = []

    def stalled_service(claimed: Job) -> dict[str, Any]:
        later = claimed.lease_expires_at + timedelta(seconds=1)
        takeover.append(claim_job(claimed.pk, now=later))
        if outcome == "fails transiently":
            raise TransientJobError("stale")
        if outcome == "fails permanently":
            raise PermanentJobError("stale")
        return {"by": "stalled worker"}

    run_job(job.pk, stalled_service)

    assert takeover[0] is not None
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert job.attempts == 2
    assert job.lease_expires_at == takeover[0].lease_expires_at
    assert job.result == {}
    assert job.last_error == ""


# --- backoff -------------------------------------------------------------------------


def test_backoff_doubles_with_each_attempt_until_the_cap(job_settings):
    # The same seed draws the same jitter factor, so the ratios expose the nominal delay.
    factor = random.Random(7).uniform(0.5, 1.0)
    delays = [backoff_seconds(n, rng=random.Random(7)) for n in range(1, 10)]

    nominal = [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert delays == pytest.approx([d * factor for d in nominal])


def test_backoff_of_many_attempts_stays_at_the_cap(job_settings):
    factor = random.Random(11).uniform(0.5, 1.0)

    assert backoff_seconds(60, rng=random.Random(11)) == pytest.approx(3600 * factor)


def test_backoff_is_jittered_between_half_and_all_of_the_nominal_delay(job_settings):
    rng = random.Random(2024)
    for attempts, nominal in [(1, 30), (3, 120), (12, 3600)]:
        delays = [backoff_seconds(attempts, rng=rng) for _ in range(500)]

        assert all(0.5 * nominal <= d <= nominal for d in delays)
        # Spread over the window, not one value: jobs that failed together come back apart.
        assert min(delays) < 0.55 * nominal
        assert max(delays) > 0.95 * nominal


# --- retry of dead jobs ----------------------------------------------------------------


@pytest.mark.django_db
def test_retry_sends_a_dead_job_back_to_pending_and_dispatches_it_after_commit(
    broker, django_capture_on_commit_callbacks
):
    job = JobFactory(dead=True, last_error="KeyError: 'files'")

    with django_capture_on_commit_callbacks(execute=True):
        assert retry_jobs([job.pk]) == 1
        assert broker.llen(INGEST_QUEUE) == 0

    job.refresh_from_db()
    assert job.state == JobState.PENDING
    assert job.attempts == 0
    assert job.next_attempt_at <= timezone.now()
    assert job.finished_at is None
    assert job.last_error == "KeyError: 'files'"  # kept for the operator until it runs again
    assert queued_job_ids(broker) == [job.pk]
    assert claim_job(job.pk) is not None


@pytest.mark.django_db
def test_retry_ignores_jobs_that_are_not_dead(broker, django_capture_on_commit_callbacks):
    pending = JobFactory()
    running = JobFactory(running=True)
    succeeded = JobFactory(succeeded=True)
    before = {j.pk: (j.state, j.attempts) for j in (pending, running, succeeded)}

    with django_capture_on_commit_callbacks(execute=True):
        assert retry_jobs([pending.pk, running.pk, succeeded.pk]) == 0

    assert {j.pk: (j.state, j.attempts) for j in Job.objects.all()} == before
    assert broker.llen(INGEST_QUEUE) == 0


@pytest.mark.django_db
def test_admin_action_retries_the_selected_dead_jobs(
    admin_client, broker, django_capture_on_commit_callbacks
):
    selected = [JobFactory(dead=True), JobFactory(dead=True)]
    selected_done = JobFactory(succeeded=True)
    not_selected = JobFactory(dead=True)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:jobs_job_changelist"),
            {
                "action": "retry_selected",
                "_selected_action": [j.pk for j in [*selected, selected_done]],
            },
            follow=True,
        )

    assert response.status_code == 200
    assert "2 dead job(s) sent back to the queue." in response.content.decode()
    states = dict(Job.objects.values_list("pk", "state"))
    assert states == {
        selected[0].pk: JobState.PENDING,
        selected[1].pk: JobState.PENDING,
        selected_done.pk: JobState.SUCCEEDED,
        not_selected.pk: JobState.DEAD,
    }
    assert sorted(queued_job_ids(broker)) == sorted(j.pk for j in selected)


@pytest.mark.django_db
def test_admin_lists_jobs_and_cannot_create_them(admin_client):
    JobFactory(dead=True, dedup_key="ingest:acme/shop:5:1")

    changelist = admin_client.get(reverse("admin:jobs_job_changelist") + "?state=dead")
    add = admin_client.get(reverse("admin:jobs_job_add"))

    assert changelist.status_code == 200
    assert "ingest:acme/shop:5:1" in changelist.content.decode()
    # Jobs come from enqueue_job only; a hand-made row would have no due time.
    assert add.status_code == 403


# --- the jobs API ------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_lists_dead_jobs_when_filtered_by_state(admin_client):
    dead = [JobFactory(dead=True), JobFactory(dead=True)]
    JobFactory()
    JobFactory(succeeded=True)

    response = admin_client.get("/api/v1/jobs/", {"state": "dead"})

    assert response.status_code == 200
    body = response.json()
    assert [j["id"] for j in body["results"]] == [dead[1].pk, dead[0].pk]  # newest first
    assert body["next"] is None
    assert {j["state"] for j in body["results"]} == {"dead"}
    assert body["results"][0]["last_error"] == dead[1].last_error
    # An unknown state is an error, not an empty list.
    unknown = admin_client.get("/api/v1/jobs/", {"state": "deadish"})
    assert unknown.status_code == 400 and "state" in unknown.json()


@pytest.mark.django_db
def test_api_retry_sends_a_dead_job_back_to_the_queue(
    admin_client, broker, django_capture_on_commit_callbacks
):
    job = JobFactory(dead=True)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/api/v1/jobs/{job.pk}/retry/")

    assert response.status_code == 200
    assert response.json()["state"] == "pending"
    assert response.json()["attempts"] == 0
    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.PENDING, 0)
    assert queued_job_ids(broker) == [job.pk]


@pytest.mark.django_db
@pytest.mark.parametrize("trait", ["pending", "running", "succeeded"])
def test_api_retry_of_a_job_that_is_not_dead_is_a_conflict(
    admin_client, broker, django_capture_on_commit_callbacks, trait
):
    job = JobFactory(**({} if trait == "pending" else {trait: True}))
    before = (job.state, job.attempts)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/api/v1/jobs/{job.pk}/retry/")

    assert response.status_code == 409
    assert job.state in response.json()["detail"]
    job.refresh_from_db()
    assert (job.state, job.attempts) == before
    assert broker.llen(INGEST_QUEUE) == 0


@pytest.mark.django_db(transaction=True)
def test_api_retry_that_loses_the_race_to_another_retry_is_a_conflict(admin_client, broker):
    job = JobFactory(dead=True)
    responses: list[Any] = []

    def retry_over_http() -> None:
        try:
            responses.append(admin_client.post(f"/api/v1/jobs/{job.pk}/retry/"))
        finally:
            connection.close()

    request = threading.Thread(target=retry_over_http)
    with transaction.atomic():
        assert retry_jobs([job.pk]) == 1  # another operator, not yet committed
        request.start()  # reads the job as dead, then waits for our row lock
        wait_until_a_query_waits_for_a_lock()
    request.join()

    assert responses[0].status_code == 409
    assert "pending" in responses[0].json()["detail"]
    assert queued_job_ids(broker) == [job.pk]  # one retry, one message


@pytest.mark.django_db
def test_api_retry_of_an_unknown_job_is_not_found(admin_client):
    assert admin_client.post("/api/v1/jobs/987654/retry/").status_code == 404


@pytest.mark.django_db
def test_api_jobs_take_the_job_model_s_permissions(client, django_user_model, broker):
    from django.contrib.auth.models import Permission

    job = JobFactory(dead=True)

    anonymous_list = client.get("/api/v1/jobs/")
    anonymous_retry = client.post(f"/api/v1/jobs/{job.pk}/retry/")
    client.force_login(django_user_model.objects.create_user("dev", password="x"))
    user_list = client.get("/api/v1/jobs/")
    # Being staff is not enough: a job's error holds a traceback.
    staff = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    client.force_login(staff)
    staff_list = client.get("/api/v1/jobs/")
    staff.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(django_user_model.objects.get(pk=staff.pk))  # permissions cached per user
    viewer_list = client.get("/api/v1/jobs/")
    viewer_retry = client.post(f"/api/v1/jobs/{job.pk}/retry/")

    assert (anonymous_list.status_code, anonymous_retry.status_code) == (401, 401)
    assert user_list.status_code == 403 and staff_list.status_code == 403
    assert viewer_list.status_code == 200 and len(viewer_list.json()["results"]) == 1
    assert viewer_retry.status_code == 403  # retrying takes change_job
    job.refresh_from_db()
    assert job.state == JobState.DEAD
    assert broker.llen(INGEST_QUEUE) == 0


# --- the sweeper ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_sweep_redispatches_a_pending_job_whose_dispatch_was_lost(job_settings, broker):
    now = timezone.now()
    job = JobFactory(
        next_attempt_at=now - timedelta(seconds=700), dispatched_at=now - timedelta(seconds=601)
    )

    assert sweep_jobs(now=now) == 1

    assert queued_job_ids(broker) == [job.pk]
    job.refresh_from_db()
    assert job.dispatched_at == now
    assert sweep_jobs(now=now + timedelta(seconds=30)) == 0
    assert queued_job_ids(broker) == [job.pk]


@pytest.mark.django_db
def test_sweep_dispatches_a_retry_that_came_due(job_settings, broker):
    now = timezone.now()
    job = JobFactory(attempts=1, next_attempt_at=now - timedelta(seconds=1), dispatched_at=None)

    assert sweep_jobs(now=now) == 1

    assert queued_job_ids(broker) == [job.pk]
    job.refresh_from_db()
    assert job.dispatched_at == now


@pytest.mark.django_db
def test_sweep_leaves_a_freshly_dispatched_pending_job_alone(job_settings, broker):
    now = timezone.now()
    broker_restarted()  # a sweeper that has seen this broker before
    JobFactory(
        next_attempt_at=now - timedelta(seconds=10), dispatched_at=now - timedelta(seconds=10)
    )

    assert sweep_jobs(now=now) == 0
    assert broker.llen(INGEST_QUEUE) == 0


@pytest.mark.django_db
def test_after_a_broker_restart_the_sweep_sends_every_due_job_again(job_settings, broker):
    # The Redis that held the messages restarted without them: no dispatched
    # job's message is waiting anywhere, however recently it was sent.
    now = timezone.now()
    broker_restarted()
    fresh = JobFactory(
        next_attempt_at=now - timedelta(seconds=10), dispatched_at=now - timedelta(seconds=10)
    )
    later = JobFactory(next_attempt_at=now + timedelta(minutes=5), dispatched_at=None)
    run_id = broker.info("server")["run_id"]
    from django.core.cache import cache

    cache.set("sweeper:broker-run-id", "the-previous-server", timeout=None)

    assert sweep_jobs(now=now) == 1
    assert queued_job_ids(broker) == [fresh.pk]
    assert sweep_jobs(now=now) == 0  # once: the new server is noted
    assert cache.get("sweeper:broker-run-id") == run_id
    assert later.pk not in queued_job_ids(broker)  # not due: waits for its time


@pytest.mark.django_db
def test_sweep_leaves_a_retry_that_is_not_yet_due_alone(job_settings, broker):
    now = timezone.now()
    job = JobFactory(attempts=1, next_attempt_at=now + timedelta(seconds=60), dispatched_at=None)

    assert sweep_jobs(now=now) == 0

    assert broker.llen(INGEST_QUEUE) == 0
    job.refresh_from_db()
    assert job.dispatched_at is None


@pytest.mark.django_db
@pytest.mark.parametrize("trait", ["succeeded", "dead"])
def test_sweep_leaves_finished_jobs_alone(job_settings, broker, trait):
    now = timezone.now()
    JobFactory(**{trait: True}, next_attempt_at=now - timedelta(days=1), dispatched_at=None)

    assert sweep_jobs(now=now) == 0
    assert broker.llen(INGEST_QUEUE) == 0


def _job_with_expired_lease(now, *, attempts: int, max_attempts: int = 3) -> Job:
    lease = timedelta(seconds=35 * 60)
    return JobFactory(
        running=True,
        attempts=attempts,
        max_attempts=max_attempts,
        dispatched_at=now - lease - timedelta(seconds=61),
        started_at=now - lease - timedelta(seconds=60),
        lease_expires_at=now - timedelta(seconds=60),
    )


@pytest.mark.django_db
def test_sweep_redispatches_a_running_job_whose_lease_expired(job_settings, broker):
    now = timezone.now()
    job = _job_with_expired_lease(now, attempts=1)

    assert sweep_jobs(now=now) == 1

    assert queued_job_ids(broker) == [job.pk]
    claimed = claim_job(job.pk, now=now)
    assert claimed is not None
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert job.attempts == 2
    assert job.lease_expires_at == now + timedelta(seconds=35 * 60)


@pytest.mark.django_db
def test_a_broker_restart_resends_an_expired_lease_job_sent_just_before(job_settings, broker):
    from django.core.cache import cache

    now = timezone.now()
    job = _job_with_expired_lease(now, attempts=1)
    assert sweep_jobs(now=now) == 1
    broker.flushdb()  # the restart: the message and the sweeper's note are gone
    cache.delete("sweeper:broker-run-id")

    assert sweep_jobs(now=now + timedelta(seconds=30)) == 1
    assert queued_job_ids(broker) == [job.pk]


@pytest.mark.django_db
def test_sweep_does_not_resend_an_expired_lease_job_it_just_sent(job_settings, broker):
    now = timezone.now()
    job = _job_with_expired_lease(now, attempts=1)
    assert sweep_jobs(now=now) == 1

    assert sweep_jobs(now=now + timedelta(seconds=30)) == 0
    assert queued_job_ids(broker) == [job.pk]

    # Nobody claimed it for a whole redispatch window: that message was lost too.
    assert sweep_jobs(now=now + timedelta(seconds=601)) == 1
    assert queued_job_ids(broker) == [job.pk, job.pk]


@pytest.mark.django_db
def test_sweep_marks_dead_a_job_whose_lease_expired_on_its_last_attempt(job_settings, broker):
    now = timezone.now()
    job = _job_with_expired_lease(now, attempts=3, max_attempts=3)

    assert sweep_jobs(now=now) == 0

    assert broker.llen(INGEST_QUEUE) == 0
    job.refresh_from_db()
    assert job.state == JobState.DEAD
    assert job.finished_at == now
    assert job.lease_expires_at is None
    assert "worker lost" in job.last_error


@pytest.mark.django_db
def test_sweep_leaves_a_running_job_with_a_live_lease_alone(job_settings, broker):
    now = timezone.now()
    JobFactory(
        running=True,
        dispatched_at=now - timedelta(hours=1),
        lease_expires_at=now + timedelta(seconds=1),
    )

    assert sweep_jobs(now=now) == 0
    assert broker.llen(INGEST_QUEUE) == 0


# --- drain (the embedded default's worker) ---------------------------------------------------


@pytest.mark.django_db
def test_drain_runs_every_due_job_once_and_leaves_the_rest(scripted_kind):
    now = timezone.now()
    due = [JobFactory(kind=scripted_kind), JobFactory(kind=scripted_kind)]
    failing = JobFactory(kind=scripted_kind, payload={"fail": "transient"})
    later = JobFactory(kind=scripted_kind, next_attempt_at=now + timedelta(hours=1))

    assert drain_jobs() == 3

    states = dict(Job.objects.values_list("pk", "state"))
    assert [states[j.pk] for j in due] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    failing.refresh_from_db()
    assert (failing.state, failing.attempts) == (JobState.PENDING, 1)  # its retry is not due yet
    assert states[later.pk] == JobState.PENDING
    assert drain_jobs() == 0


class _Delivery:
    """What run_delivered needs of a Celery task: its request, and where a resend goes."""

    def __init__(self) -> None:
        self.request = type("Request", (), {"is_eager": False})()
        self.sent: list[dict] = []

    def apply_async(self, **options: Any) -> None:
        self.sent.append(options)


@pytest.mark.django_db(transaction=True)
def test_a_delivery_that_finds_its_due_job_locked_sends_it_again_then_leaves_it_to_the_sweeper(
    job_settings, scripted_kind
):
    from jobs.delivery import run_delivered

    job = JobFactory(kind=scripted_kind)
    delivery = _Delivery()
    from tests.processes import test_database_url

    with psycopg.connect(test_database_url(), autocommit=False) as other:
        # The sweeper's scan holds the due row for an instant: the claim skips it.
        other.execute(f"SELECT id FROM {Job._meta.db_table} WHERE id = %s FOR UPDATE", [job.pk])
        run_delivered(delivery, job.pk, lambda j: {}, kind=scripted_kind)
        # The resend finds it locked too; its mark for the sweeper waits for the lock.
        recheck = threading.Thread(
            target=run_delivered,
            args=(delivery, job.pk, lambda j: {}),
            kwargs={"kind": scripted_kind, "recheck": True},
        )
        recheck.start()
        time.sleep(0.5)
        other.commit()
        recheck.join(timeout=30)

    assert [(o["kwargs"], o["countdown"]) for o in delivery.sent] == [({"recheck": True}, 1.0)]
    job.refresh_from_db()
    assert job.state == JobState.PENDING and job.dispatched_at is None  # the sweeper's next pass
