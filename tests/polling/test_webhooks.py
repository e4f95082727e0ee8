"""The GitHub webhook receiver: signatures, size cap, deduplication, and what each event writes."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import socket
import statistics
import threading
import time
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from analysis.models import Quarantine
from flakeguard.env import env_list
from ingest.models import Repository, TestCase
from jobs.models import Job, JobKind
from polling.models import CheckRun, GitHubSettings, WebhookDelivery
from polling.repositories import UNINSTALLED, add_repository
from polling.webhooks import MAX_RUN_ATTEMPT, github_webhook, webhook_secrets
from tests.factories import RepositoryFactory

URL = "/webhooks/github"
SECRET = "webhook-secret-new"
OLD_SECRET = "webhook-secret-old"
REPO = "acme/shop"
INSTALLATION = 4242


@pytest.fixture(autouse=True)
def webhook_settings(settings) -> None:
    settings.GITHUB_WEBHOOK_SECRET = [SECRET]
    settings.FLAKEGUARD_WEBHOOK_MAX_BYTES = 64 * 1024


@pytest.fixture(autouse=True)
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Job ids handed to Celery after commit, recorded instead of sent."""
    sent: list[int] = []
    monkeypatch.setattr("jobs.dispatch.dispatch", lambda job_id, kind: sent.append(job_id))
    return sent


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(
    client: Client,
    event: str,
    payload: dict[str, Any] | bytes,
    *,
    delivery: str | None = None,
    secret: str | None = SECRET,
    **headers: str,
):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        **({"X-Hub-Signature-256": sign(body, secret)} if secret else {}),
        **headers,
    }
    return client.post(URL, data=body, content_type="application/json", headers=sent)


def workflow_run(run_id: int = 812, attempt: int = 1, *, repo: str = REPO, **extra: Any) -> dict:
    return {
        "action": "completed",
        "workflow_run": {
            "id": run_id,
            "name": "ci",
            "run_attempt": attempt,
            "status": "completed",
            "conclusion": "failure",
            "head_sha": "a1b2c3d4e5f6" + "0" * 28,
            "head_branch": "main",
            "event": "push",
            "created_at": "2026-09-01T10:00:00Z",
            "run_started_at": "2026-09-01T10:00:05Z",
            "updated_at": "2026-09-01T10:12:00Z",
        },
        "repository": {"full_name": repo, "default_branch": "main"},
        **extra,
    }


def repository_payload(*names: str) -> list[dict]:
    return [
        {"id": n, "name": name.split("/")[1], "full_name": name} for n, name in enumerate(names)
    ]


# --- signatures and limits ------------------------------------------------------


@pytest.mark.django_db
def test_signed_completed_workflow_run_queues_its_ingest_job(
    client: Client, dispatched: list[int], django_capture_on_commit_callbacks
) -> None:
    RepositoryFactory(full_name=REPO)

    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, "workflow_run", workflow_run(812, 2), delivery="d-1")

    assert response.status_code == 200
    job = Job.objects.get(dedup_key=f"ingest:{REPO}:812:2")
    assert job.kind == JobKind.INGEST_RUN
    assert job.payload["run"]["sha"].startswith("a1b2c3d")
    # the re-run's first attempt is queued too
    assert Job.objects.filter(dedup_key=f"ingest:{REPO}:812:1").exists()
    body = response.json()
    assert body["status"] == "ok"
    assert job.pk in body["jobs"]
    delivery = WebhookDelivery.objects.get(delivery_id="d-1")
    assert (delivery.event, delivery.action, delivery.repository) == (
        "workflow_run", "completed", REPO,
    )  # fmt: skip
    assert sorted(delivery.outcome["jobs"]) == sorted(Job.objects.values_list("pk", flat=True))
    assert sorted(dispatched) == sorted(delivery.outcome["jobs"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    "secret, signature",
    [
        (None, None),  # no signature header
        ("not-our-secret", None),
        (None, "sha256=" + "0" * 64),
        (None, "sha1=0123"),
    ],
)
def test_bad_or_missing_signature_is_refused_and_nothing_recorded(
    client: Client, secret: str | None, signature: str | None, django_assert_num_queries
) -> None:
    RepositoryFactory(full_name=REPO)
    headers = {"X-Hub-Signature-256": signature} if signature else {}

    with django_assert_num_queries(0):
        response = deliver(client, "workflow_run", workflow_run(), secret=secret, **headers)

    assert response.status_code == 401
    assert not Job.objects.exists()
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_signature_with_the_previous_secret_is_accepted_during_rotation(
    client: Client, settings
) -> None:
    settings.GITHUB_WEBHOOK_SECRET = [OLD_SECRET, SECRET]
    RepositoryFactory(full_name=REPO)

    old = deliver(client, "workflow_run", workflow_run(1), secret=OLD_SECRET)
    new = deliver(client, "workflow_run", workflow_run(2), secret=SECRET)
    stale = deliver(client, "workflow_run", workflow_run(3), secret="retired-secret")

    assert (old.status_code, new.status_code, stale.status_code) == (200, 200, 401)
    assert Job.objects.count() == 2


def test_comma_separated_secrets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", f" {OLD_SECRET}, {SECRET} ")
    assert env_list("GITHUB_WEBHOOK_SECRET", []) == [OLD_SECRET, SECRET]
    # a secret set as one string (an override) is split the same way
    settings.GITHUB_WEBHOOK_SECRET = f"{OLD_SECRET},{SECRET},"
    assert webhook_secrets() == [OLD_SECRET, SECRET]


@pytest.mark.django_db
def test_no_secret_configured_disables_the_endpoint(client: Client, settings) -> None:
    settings.GITHUB_WEBHOOK_SECRET = []

    response = deliver(client, "ping", {"zen": "hi"})

    assert response.status_code == 503
    assert "GITHUB_WEBHOOK_SECRET" in response.json()["error"]
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_body_over_the_cap_is_refused_with_413(client: Client, settings) -> None:
    RepositoryFactory(full_name=REPO)
    payload = workflow_run(padding="x" * settings.FLAKEGUARD_WEBHOOK_MAX_BYTES)

    response = deliver(client, "workflow_run", payload)

    assert response.status_code == 413
    assert not Job.objects.exists()
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_body_without_content_length_is_cut_off_at_the_cap(settings) -> None:
    # Chunked bodies (ASGI) carry no Content-Length: the cap holds while reading.
    body = json.dumps(workflow_run(padding="x" * 200_000)).encode()
    request = RequestFactory().post(
        URL,
        data=body,
        content_type="application/json",
        headers={
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": "chunked-1",
            "X-Hub-Signature-256": sign(body),
        },
    )
    del request.META["CONTENT_LENGTH"]
    request._stream = io.BytesIO(body)

    response = github_webhook(request)

    assert response.status_code == 413
    assert request._stream.tell() <= settings.FLAKEGUARD_WEBHOOK_MAX_BYTES + 1
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_malformed_json_with_a_good_signature_is_a_bad_request(client: Client) -> None:
    response = deliver(client, "workflow_run", b'{"action": "completed", ')

    assert response.status_code == 400
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_only_post_is_answered(client: Client) -> None:
    assert client.get(URL).status_code == 405


# --- deduplication ----------------------------------------------------------------


@pytest.mark.django_db
def test_duplicate_webhook_creates_one_job(client: Client) -> None:
    RepositoryFactory(full_name=REPO)

    first = deliver(client, "workflow_run", workflow_run(), delivery="same")
    second = deliver(client, "workflow_run", workflow_run(), delivery="same")

    assert first.json()["status"] == "ok"
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "delivery": "same"}
    assert Job.objects.count() == 1
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.django_db
def test_another_delivery_of_a_queued_run_adds_no_job(client: Client) -> None:
    RepositoryFactory(full_name=REPO)

    deliver(client, "workflow_run", workflow_run())
    again = deliver(client, "workflow_run", workflow_run())

    assert again.json()["jobs"] == []
    assert again.json()["already_queued"] == list(Job.objects.values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_deliveries_of_one_webhook_make_one_job(dispatched: list[int]) -> None:
    RepositoryFactory(full_name=REPO)
    body = json.dumps(workflow_run(9001)).encode()
    headers = {
        "X-GitHub-Event": "workflow_run",
        "X-GitHub-Delivery": "concurrent-1",
        "X-Hub-Signature-256": sign(body),
    }
    start = threading.Barrier(10)
    answers: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def post() -> None:
        try:
            client = Client()
            start.wait()
            response = client.post(URL, data=body, content_type="application/json", headers=headers)
            answers.append((response.status_code, response.json()["status"]))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert sorted(answers) == [(200, "duplicate")] * 9 + [(200, "ok")]
    assert Job.objects.count() == 1
    assert WebhookDelivery.objects.count() == 1
    assert dispatched == [Job.objects.get().pk]


# --- events -------------------------------------------------------------------------


@pytest.mark.django_db
def test_ping_is_answered(client: Client) -> None:
    response = deliver(client, "ping", {"zen": "Keep it logically awesome.", "hook_id": 1})

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert WebhookDelivery.objects.get().event == "ping"


@pytest.mark.django_db
def test_each_delivery_is_logged_on_one_line(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    RepositoryFactory(full_name=REPO)
    caplog.set_level(logging.INFO, logger="polling.webhooks")

    deliver(client, "workflow_run", workflow_run(), delivery="logged-1")
    deliver(client, "workflow_run", workflow_run(), delivery="logged-1")

    lines = [r.getMessage() for r in caplog.records if r.name == "polling.webhooks"]
    job = Job.objects.get()
    assert lines[0] == (
        f"webhook workflow_run.completed repo={REPO} delivery=logged-1: "
        f'{{"already_queued": [], "jobs": [{job.pk}]}}'
    )
    assert lines[1].startswith(f"webhook workflow_run.completed repo={REPO} delivery=logged-1: dup")
    assert len(lines) == 2


@pytest.mark.django_db
def test_unknown_event_is_ignored(client: Client) -> None:
    response = deliver(client, "star", {"action": "created", "repository": {"full_name": REPO}})

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert WebhookDelivery.objects.get().outcome == {"ignored": "event 'star'"}


@pytest.mark.django_db
def test_workflow_run_other_than_completed_is_ignored(client: Client) -> None:
    RepositoryFactory(full_name=REPO)

    response = deliver(client, "workflow_run", workflow_run(action="in_progress"))

    assert response.json()["status"] == "ignored"
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_workflow_run_of_an_unknown_repository_without_installation_is_ignored(
    client: Client,
) -> None:
    response = deliver(client, "workflow_run", workflow_run(repo="stranger/repo"))

    assert response.json()["status"] == "ignored"
    assert WebhookDelivery.objects.get().outcome == {"ignored": "unknown repository"}
    assert not Repository.objects.exists()
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_workflow_run_of_an_installed_unknown_repository_registers_it(client: Client) -> None:
    payload = workflow_run(repo="acme/new", installation={"id": INSTALLATION})

    response = deliver(client, "workflow_run", payload)

    assert response.json()["registered"] == "acme/new"
    repository = Repository.objects.get(full_name="acme/new")
    assert repository.installation_id == INSTALLATION
    assert GitHubSettings.objects.filter(repository=repository).exists()
    assert Job.objects.filter(dedup_key="ingest:acme/new:812:1").exists()


@pytest.mark.django_db
def test_workflow_run_with_a_malformed_run_is_a_bad_request(client: Client) -> None:
    RepositoryFactory(full_name=REPO)
    payload = workflow_run()
    del payload["workflow_run"]["id"]

    response = deliver(client, "workflow_run", payload)

    assert response.status_code == 400
    assert not WebhookDelivery.objects.exists()


def with_run_field(key: str, value: Any) -> dict:
    payload = workflow_run()
    if value is ABSENT:
        del payload["workflow_run"][key]
    else:
        payload["workflow_run"][key] = value
    return payload


ABSENT = object()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "x"),
        ("id", True),
        ("id", 0),
        ("id", -812),
        ("id", 812.0),
        ("id", 2**63),
        ("id", None),
        ("run_attempt", "x"),
        ("run_attempt", 0),
        ("run_attempt", MAX_RUN_ATTEMPT + 1),
        ("run_attempt", 100_000),
        ("run_attempt", [2]),
        ("head_sha", "x"),
        ("head_sha", "g" * 40),
        ("head_sha", "a" * 41),
        ("head_sha", 1234),
        ("head_sha", ABSENT),
        ("head_branch", "b" * 256),
        ("head_branch", {"name": "main"}),
        ("event", "e" * 41),
        ("name", "n" * 256),
        ("created_at", "yesterday"),
        ("run_started_at", "2026-09-01T10:00:05"),  # no zone
        ("updated_at", 1_788_000_000),
        ("updated_at", "2" * 10_000),
    ],
)
def test_workflow_run_with_a_bad_field_is_refused_naming_it_and_records_nothing(
    client: Client, dispatched: list[int], field: str, value: Any
) -> None:
    RepositoryFactory(full_name=REPO)

    response = deliver(client, "workflow_run", with_run_field(field, value))

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "refused"
    assert body["field"] == f"workflow_run.{field}"
    assert body["error"].startswith(f"workflow_run.{field}: ")
    assert len(body["error"]) < 200  # the value is shown cut short, whatever its size
    assert not WebhookDelivery.objects.exists()
    assert not Job.objects.exists() and dispatched == []


@pytest.mark.django_db
def test_a_hundred_thousand_attempts_are_refused_before_any_query(client: Client) -> None:
    # Once answered by one ingest job per earlier attempt, 93,303 inserts in one request.
    RepositoryFactory(full_name=REPO)

    with CaptureQueriesContext(connection) as captured:
        response = deliver(client, "workflow_run", workflow_run(812, 100_000))

    assert response.status_code == 400
    assert response.json()["error"] == (
        "workflow_run.run_attempt: must be an integer from 1 to 100, not 100000"
    )
    assert len(captured.captured_queries) == 0
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_the_highest_attempt_allowed_queues_one_job_per_attempt(client: Client) -> None:
    RepositoryFactory(full_name=REPO)

    response = deliver(client, "workflow_run", workflow_run(812, MAX_RUN_ATTEMPT))

    assert response.status_code == 200
    assert Job.objects.filter(kind=JobKind.INGEST_RUN).count() == MAX_RUN_ATTEMPT


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [("head_branch", None), ("event", None), ("name", None), ("created_at", None),
     ("run_attempt", ABSENT), ("head_sha", "A1B2C3D4E5F6" + "0" * 28), ("id", 2**63 - 1)],
)  # fmt: skip
def test_fields_github_may_leave_empty_are_accepted(client: Client, field: str, value: Any) -> None:
    RepositoryFactory(full_name=REPO)

    response = deliver(client, "workflow_run", with_run_field(field, value))

    assert response.status_code == 200, response.content
    assert Job.objects.filter(kind=JobKind.INGEST_RUN).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("event", "payload", "field"),
    [
        ("workflow_run", workflow_run(repo="a" * 201), "repository.full_name"),
        ("workflow_run", workflow_run(repository={"full_name": 7}), "repository.full_name"),
        ("workflow_run", workflow_run(installation={"id": "4242"}), "installation.id"),
        ("workflow_run", workflow_run(installation={"id": 2**64}), "installation.id"),
        ("installation", {"action": "created", "installation": {"id": -1}}, "installation.id"),
        (
            "check_run",
            {
                "action": "requested_action",
                "requested_action": {"identifier": "quarantine"},
                "check_run": {"id": 2**70, "head_sha": "d" * 40},
                "repository": {"full_name": REPO},
            },
            "check_run.id",
        ),
    ],
)
def test_other_bad_fields_are_refused_naming_them(
    client: Client, event: str, payload: dict, field: str
) -> None:
    RepositoryFactory(full_name=REPO)

    response = deliver(client, event, payload)

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert not WebhookDelivery.objects.exists()
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_fields_of_an_ignored_workflow_run_action_are_not_read(client: Client) -> None:
    RepositoryFactory(full_name=REPO)
    payload = workflow_run(action="requested")
    payload["workflow_run"]["run_attempt"] = "not read"

    response = deliver(client, "workflow_run", payload)

    assert response.json()["status"] == "ignored"


@pytest.mark.django_db
def test_check_run_quarantine_button_quarantines_the_check_runs_flaky_tests(
    client: Client,
) -> None:
    repository = RepositoryFactory(full_name=REPO)
    flaky = [
        TestCase.objects.create(repository=repository, identity=f"{n:040x}", name=f"test_{n}")
        for n in range(3)
    ]
    bystander = TestCase.objects.create(repository=repository, identity="f" * 40, name="test_ok")
    sha = "c0ffee" + "1" * 34
    check_run = CheckRun.objects.create(
        repository=repository,
        head_sha=sha,
        github_id=555,
        flaky_tests=[test.pk for test in flaky],
    )
    payload = {
        "action": "requested_action",
        "requested_action": {"identifier": "quarantine"},
        "check_run": {"id": 555, "head_sha": sha, "name": "FlakeGuard"},
        "repository": {"full_name": REPO},
        "sender": {"login": "octocat"},
    }

    response = deliver(client, "check_run", payload)

    assert response.status_code == 200
    assert response.json()["check_run"] == check_run.pk
    quarantined = Quarantine.objects.order_by("test_id")
    assert [q.test_id for q in quarantined] == [test.pk for test in flaky]
    assert {q.created_by for q in quarantined} == {"github:octocat"}
    assert {q.reason for q in quarantined} == {
        "quarantined from the FlakeGuard check run of c0ffee1"
    }
    assert not Quarantine.objects.filter(test=bystander).exists()


@pytest.mark.django_db
def test_check_run_found_by_commit_when_github_id_is_not_recorded(client: Client) -> None:
    repository = RepositoryFactory(full_name=REPO)
    test = TestCase.objects.create(repository=repository, identity="a" * 40, name="test_a")
    CheckRun.objects.create(repository=repository, head_sha="d" * 40, flaky_tests=[test.pk])
    payload = {
        "action": "requested_action",
        "requested_action": {"identifier": "quarantine"},
        "check_run": {"id": 999, "head_sha": "d" * 40},
        "repository": {"full_name": REPO},
        "sender": {"login": "hubot"},
    }

    deliver(client, "check_run", payload)

    assert Quarantine.objects.get().created_by == "github:hubot"


@pytest.mark.django_db
def test_check_run_events_other_than_the_quarantine_button_are_ignored(client: Client) -> None:
    RepositoryFactory(full_name=REPO)
    rerequested = {"action": "rerequested", "check_run": {"id": 1, "head_sha": "e" * 40},
                   "repository": {"full_name": REPO}}  # fmt: skip
    unknown = {"action": "requested_action", "requested_action": {"identifier": "other"},
               "check_run": {"id": 1, "head_sha": "e" * 40}, "repository": {"full_name": REPO}}  # fmt: skip
    no_check = {"action": "requested_action", "requested_action": {"identifier": "quarantine"},
                "check_run": {"id": 1, "head_sha": "e" * 40}, "repository": {"full_name": REPO}}  # fmt: skip

    answers = [deliver(client, "check_run", p).json() for p in (rerequested, unknown, no_check)]

    assert [a["status"] for a in answers] == ["ignored"] * 3
    assert answers[2]["ignored"] == "unknown check run"
    assert not Quarantine.objects.exists()


@pytest.mark.django_db
def test_installation_created_registers_its_repositories(client: Client) -> None:
    add_repository(
        full_name="acme/old", backfill=False
    )  # registered earlier by hand, without installation
    payload = {
        "action": "created",
        "installation": {"id": INSTALLATION, "account": {"login": "acme"}},
        "repositories": repository_payload("acme/shop", "acme/old"),
    }

    response = deliver(client, "installation", payload)

    assert response.status_code == 200
    assert response.json()["registered"] == ["acme/shop"]
    assert dict(Repository.objects.values_list("full_name", "installation_id")) == {
        "acme/shop": INSTALLATION,
        "acme/old": INSTALLATION,
    }
    assert GitHubSettings.objects.count() == 2


@pytest.mark.django_db
def test_installation_deleted_detaches_its_repositories_and_keeps_their_history(
    client: Client,
) -> None:
    shop, _, _ = add_repository(full_name="acme/shop", installation_id=INSTALLATION, backfill=False)
    add_repository(full_name="acme/api", installation_id=INSTALLATION, backfill=False)
    add_repository(full_name="other/lib", installation_id=7, backfill=False)
    TestCase.objects.create(repository=shop, identity="b" * 40, name="test_kept")
    payload = {
        "action": "deleted",
        "installation": {"id": INSTALLATION},
        "repositories": repository_payload("acme/shop", "acme/api"),
    }

    response = deliver(client, "installation", payload)

    assert response.json()["detached"] == ["acme/api", "acme/shop"]
    assert dict(Repository.objects.values_list("full_name", "installation_id")) == {
        "acme/shop": None,
        "acme/api": None,
        "other/lib": 7,
    }
    assert dict(GitHubSettings.objects.values_list("repository__full_name", "polling_enabled")) == {
        "acme/shop": False,
        "acme/api": False,
        "other/lib": True,
    }
    assert TestCase.objects.filter(repository=shop).exists()


@pytest.mark.django_db
def test_installation_repositories_added_and_removed(client: Client) -> None:
    add_repository(full_name="acme/shop", installation_id=INSTALLATION, backfill=False)
    GitHubSettings.objects.filter(repository__full_name="acme/shop").update(polling_enabled=False)
    base = {"installation": {"id": INSTALLATION}, "repository_selection": "selected"}

    added = deliver(
        client,
        "installation_repositories",
        {**base, "action": "added", "repositories_added": repository_payload("acme/api"),
         "repositories_removed": []},
    )  # fmt: skip
    removed = deliver(
        client,
        "installation_repositories",
        {**base, "action": "removed", "repositories_added": [],
         "repositories_removed": repository_payload("acme/api", "acme/shop")},
    )  # fmt: skip

    assert added.json()["registered"] == ["acme/api"]
    assert removed.json()["detached"] == ["acme/api", "acme/shop"]
    assert set(Repository.objects.values_list("installation_id", flat=True)) == {None}
    api = GitHubSettings.objects.get(repository__full_name="acme/api")
    assert (api.polling_enabled, api.last_poll_error) == (False, UNINSTALLED)
    # polling its operator had turned off is not marked as stopped by the removal
    assert GitHubSettings.objects.get(repository__full_name="acme/shop").last_poll_error == ""

    again = deliver(
        client,
        "installation_repositories",
        {**base, "action": "added",
         "repositories_added": repository_payload("acme/api", "acme/shop")},
    )  # fmt: skip

    assert again.json()["polling_resumed"] == 1
    assert dict(GitHubSettings.objects.values_list("repository__full_name", "polling_enabled")) == {
        "acme/api": True,  # stopped by the removal, resumed by the new installation
        "acme/shop": False,  # turned off by its operator, stays off
    }


# --- speed and isolation -------------------------------------------------------------


@pytest.mark.django_db
def test_delivery_never_contacts_github(
    client: Client, settings, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.GITHUB_API_URL = f"http://127.0.0.1:{closed_port}"
    settings.GITHUB_TOKEN = "ghp_unused"
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        attempts.append(address)
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    RepositoryFactory(full_name=REPO, installation_id=INSTALLATION)

    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, "workflow_run", workflow_run())

    assert response.status_code == 200
    assert Job.objects.count() == 1
    assert attempts == []


@pytest.mark.django_db
def test_workflow_run_delivery_takes_a_handful_of_queries(client: Client) -> None:
    RepositoryFactory(full_name=REPO)

    with CaptureQueriesContext(connection) as captured:
        response = deliver(client, "workflow_run", workflow_run())

    assert response.status_code == 200
    statements = [q["sql"].split()[0] for q in captured.captured_queries]
    statements = [s for s in statements if s not in ("SAVEPOINT", "RELEASE")]
    # delivery: select, insert, update with the outcome; repository; job: insert
    assert sorted(statements) == ["INSERT", "INSERT", "SELECT", "SELECT", "UPDATE"]


@pytest.mark.django_db(transaction=True)
def test_delivery_wall_time_for_reference(capsys: pytest.CaptureFixture) -> None:
    RepositoryFactory(full_name=REPO)
    client = Client()
    timings = []
    for run_id in range(20):
        started = time.perf_counter()
        response = deliver(client, "workflow_run", workflow_run(10_000 + run_id))
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    with capsys.disabled():
        print(f"\nwebhook delivery median wall time: {statistics.median(timings) * 1000:.1f} ms")
    assert Job.objects.count() == 20


@pytest.mark.django_db
def test_quarantine_from_the_button_republishes_the_check_run(client, settings) -> None:
    from tests.factories import WorkflowRunFactory

    settings.GITHUB_TOKEN = "ghp_any"
    repository, _, _ = add_repository(full_name="acme/button", backfill=False)
    run = WorkflowRunFactory(repository=repository, sha="b" * 40)
    test = TestCase.objects.create(repository=repository, identity="f" * 40, name="test_flaky")
    check = CheckRun.objects.create(
        repository=repository, head_sha=run.sha, github_id=99, flaky_tests=[test.pk]
    )

    response = deliver(
        client,
        "check_run",
        {
            "action": "requested_action",
            "requested_action": {"identifier": "quarantine"},
            "check_run": {"id": check.github_id, "head_sha": run.sha},
            "repository": {"full_name": repository.full_name},
            "sender": {"login": "octocat"},
        },
    )

    assert response.status_code == 200
    publish = Job.objects.get(kind=JobKind.VERDICTS_CHANGED)
    assert publish.payload == {"repository_id": repository.pk, "head_sha": run.sha}
