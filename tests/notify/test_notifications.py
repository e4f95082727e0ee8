"""Notifications reach a local receiver once each, signed; the policy quarantines and releases."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.utils import timezone

from analysis.models import Quarantine, QuarantineEvent, RepositoryPolicy, TestScore
from analysis.quarantines import announce_expiring, lift_expired, quarantine_tests
from analysis.services import analyze_run
from ingest.models import Repository, TestCase
from jobs.dispatch import drain_jobs
from jobs.models import Job, JobKind, JobState
from notify.delivery import SIGNATURE_HEADER
from notify.models import Channel
from tests.analysis.test_services import REPO, history_outcomes, store


class Receiver:
    """A local HTTP endpoint that records what it is sent and answers as told."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []  # the ones answered 2xx
        self.refused = 0
        self.answers: list[int] = []  # consumed one per request; 200 when empty
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.answers.pop(0) if receiver.answers else 200
                if status < 300:
                    receiver.requests.append((self.path, dict(self.headers), body))
                else:
                    receiver.refused += 1
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self, path: str) -> list[dict]:
        return [json.loads(body) for p, _, body in self.requests if p == path]


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.server.shutdown()


def channels(receiver: Receiver, repository: Repository) -> None:
    Channel.objects.create(repository=repository, name="team hook", kind="webhook",
                           url=f"{receiver.url}/hook", secret="s3cret")  # fmt: skip
    Channel.objects.create(repository=repository, name="slack", kind="slack",
                           url=f"{receiver.url}/slack", events=["became_flaky"])  # fmt: skip


def history(tmp_path: Path, runs: range, rng: random.Random) -> None:
    for run in runs:
        analyze_run(run_pk=store(tmp_path, run, history_outcomes(rng, run)))
        drain_jobs()


@pytest.mark.django_db
def test_a_test_becoming_flaky_is_sent_once_to_each_channel_signed(tmp_path, receiver) -> None:
    rng = random.Random(7)
    store(tmp_path, 1, history_outcomes(rng, 1))
    repository = Repository.objects.get(full_name=REPO)
    channels(receiver, repository)
    analyze_run(run_pk=repository.runs.get().pk)
    receiver.answers = [503]  # the webhook's first try fails: retried, delivered once
    history(tmp_path, range(2, 41), rng)
    Job.objects.filter(kind=JobKind.DELIVER_NOTIFICATION, state=JobState.PENDING).update(
        next_attempt_at=timezone.now()
    )
    drain_jobs()

    hooks = [(headers, body) for path, headers, body in receiver.requests if path == "/hook"]
    flaky_hooks = [
        json.loads(body) for _, body in hooks if json.loads(body)["event"] == "became_flaky"
    ]
    slack = receiver.bodies("/slack")

    assert len(flaky_hooks) == 1 and len(slack) == 1  # once each, after the retry
    assert receiver.refused == 1
    event = flaky_hooks[0]
    assert event["test"] == "tests.test_shop::test_flaky" and event["status"] == "flaky"
    assert event["url"].endswith(f"/repos/{REPO}/tests/{event['test_id']}/")
    assert event["evidence"] and event["score"] >= 0.5
    for headers, body in hooks:
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER] == expected
    assert (
        "test_flaky became flaky" in slack[0]["text"] and "open in FlakeGuard" in slack[0]["text"]
    )
    assert (
        not Job.objects.filter(kind=JobKind.DELIVER_NOTIFICATION)
        .exclude(state=JobState.SUCCEEDED)
        .exists()
    )
    assert "s3cret" not in json.dumps(list(Job.objects.values_list("payload", flat=True)))


@pytest.mark.django_db
def test_a_refused_delivery_is_dead_at_once_and_kept_for_the_operator(tmp_path, receiver) -> None:
    rng = random.Random(7)
    store(tmp_path, 1, history_outcomes(rng, 1))
    repository = Repository.objects.get(full_name=REPO)
    Channel.objects.create(repository=repository, name="gone", kind="webhook",
                           url=f"{receiver.url}/gone", events=["became_flaky"])  # fmt: skip
    receiver.answers = [410] * 5
    analyze_run(run_pk=repository.runs.get().pk)
    history(tmp_path, range(2, 41), rng)

    dead = Job.objects.get(kind=JobKind.DELIVER_NOTIFICATION)
    assert dead.state == JobState.DEAD and "410" in dead.last_error
    assert receiver.refused == 1  # not retried: the receiver said no


@pytest.mark.django_db
def test_the_policy_quarantines_a_test_that_becomes_flaky_and_releases_it_when_clean(
    tmp_path, settings
) -> None:
    settings.FLAKEGUARD_RELEASE_PASSES = 30  # the default
    rng = random.Random(7)
    store(tmp_path, 1, history_outcomes(rng, 1))
    repository = Repository.objects.get(full_name=REPO)
    RepositoryPolicy.objects.create(repository=repository, auto_quarantine=True)
    analyze_run(run_pk=repository.runs.get().pk)
    history(tmp_path, range(2, 41), rng)
    flaky = TestCase.objects.get(name="test_flaky")
    broken = TestCase.objects.get(name="test_broken")

    made = Quarantine.objects.get(test=flaky)
    assert made.created_by == "flakeguard" and "became flaky" in made.reason
    assert made.expires_at > timezone.now() + timedelta(days=29)
    assert not Quarantine.objects.filter(test=broken).exists()  # failing is not flaky
    # A person quarantines another test; then everything passes for a long while.
    quarantine_tests(tests=[TestCase.objects.get(name="test_3")], created_by="lead")
    for run in range(41, 80):
        analyze_run(
            run_pk=store(tmp_path, run, dict.fromkeys(history_outcomes(rng, run), "passed"))
        )

    assert TestScore.objects.get(test=flaky).clean_since >= 30
    assert not Quarantine.objects.filter(test=flaky).exists()  # released by the policy
    assert Quarantine.objects.filter(test__name="test_3").exists()  # a person's stays
    released = QuarantineEvent.objects.get(test=flaky, action="released")
    assert released.actor == "flakeguard" and "30 clean passes" in released.reason


@pytest.mark.django_db
def test_quarantine_expiry_is_announced_before_and_when_it_happens(tmp_path, receiver) -> None:
    rng = random.Random(7)
    store(tmp_path, 1, history_outcomes(rng, 1))
    repository = Repository.objects.get(full_name=REPO)
    Channel.objects.create(repository=repository, name="hook", kind="webhook",
                           url=f"{receiver.url}/hook")  # fmt: skip
    test = TestCase.objects.get(name="test_3")
    quarantine_tests(tests=[test], created_by="lead", owner="@acme/shop",
                     expires_at=timezone.now() + timedelta(days=2))  # fmt: skip

    assert announce_expiring() == 1 and announce_expiring() == 1  # Beat runs hourly...
    drain_jobs()
    Quarantine.objects.filter(test=test).update(expires_at=timezone.now() - timedelta(seconds=1))
    lift_expired()
    drain_jobs()

    kinds = [body["event"] for body in receiver.bodies("/hook")]
    assert kinds == ["quarantine_expires", "quarantine_expired"]  # ...the channel hears once
    assert receiver.bodies("/hook")[0]["owners"] == ["@acme/shop"]


@pytest.mark.django_db
def test_a_github_issue_is_opened_for_a_flaky_test_and_closed_when_it_is_fixed(
    tmp_path, fake_github
) -> None:
    from analysis.events import announce_event

    rng = random.Random(7)
    store(tmp_path, 1, history_outcomes(rng, 1))
    repository = Repository.objects.get(full_name=REPO)
    Channel.objects.create(repository=repository, name="issues", kind="github_issue")
    remote = fake_github.repo(REPO)
    analyze_run(run_pk=repository.runs.get().pk)
    history(tmp_path, range(2, 41), rng)

    (issue,) = remote.issues.values()
    assert issue["title"] == "Flaky test: tests.test_shop::test_flaky"
    assert issue["labels"] == [{"name": "flaky-test"}] and "score" in issue["body"]
    assert f"/repos/{REPO}/tests/" in issue["body"]
    flaky = TestCase.objects.get(name="test_flaky")
    announce_event(
        repository_id=repository.pk, kind="fixed", key=f"{flaky.pk}:later",
        payload={"test_id": flaky.pk, "test": str(flaky), "score": 0.1, "repo": REPO,
                 "path": f"/repos/{REPO}/tests/{flaky.pk}/"},
    )  # fmt: skip
    drain_jobs()

    assert issue["state"] == "closed" and "stable again" in issue["comments"][-1]
    assert len(remote.issues) == 1
