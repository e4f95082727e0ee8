"""Quarantines as CI reads them: by identity, with owner and expiry, audited, cached by ETag."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from analysis.models import Quarantine, QuarantineEvent
from analysis.quarantines import lift_expired
from ingest.access import grant
from ingest.tokens import create_token
from tests.analysis.factories import TestCaseFactory, TestScoreFactory
from tests.factories import RepositoryFactory

REPO = "acme/quarantine"


@pytest.fixture
def repository(db):
    repository = RepositoryFactory(full_name=REPO)
    for name in ("test_checkout", "test_refund", "test_login"):
        TestScoreFactory(
            test=TestCaseFactory(
                repository=repository,
                classname="tests.test_shop",
                name=name,
                file="tests/test_shop.py",
                identity=hashlib.sha1(f"tests.test_shop\x1f{name}".encode()).hexdigest(),
            )
        )
    return repository


@pytest.fixture
def lead(repository) -> Client:
    user = User.objects.create_user("lead", password="x")
    grant(user=user, repository=repository, role="maintainer")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def ci(repository) -> Client:
    _, secret = create_token(repository=repository, scope="upload", name="ci")
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def quarantine(client: Client, name: str, **extra) -> dict:
    response = client.post(
        "/api/v1/quarantine/",
        {"repo": REPO, "classname": "tests.test_shop", "name": name} | extra,
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db
def test_quarantine_by_identity_is_listed_for_ci_with_its_test_key(lead, ci) -> None:
    made = quarantine(lead, "test_checkout", reason="races the payment mock", owner="team-pay")

    listed = ci.get("/api/v1/quarantine/", {"repo": REPO}).json()["results"]

    (entry,) = listed
    assert entry["test_key"] == hashlib.sha1(b"tests.test_shop\x1ftest_checkout").hexdigest()
    assert {k: entry[k] for k in ("classname", "name", "file", "reason", "owner")} == {
        "classname": "tests.test_shop",
        "name": "test_checkout",
        "file": "tests/test_shop.py",
        "reason": "races the payment mock",
        "owner": "team-pay",
    }
    assert made["created_by"] == "lead"
    # The default expiry: FLAKEGUARD_QUARANTINE_DAYS (30) from now.
    expires = Quarantine.objects.get().expires_at
    assert timedelta(days=29, hours=23) < expires - timezone.now() <= timedelta(days=30)


@pytest.mark.django_db
def test_unknown_fields_and_unknown_tests_are_refused(lead) -> None:
    typo = lead.post(
        "/api/v1/quarantine/",
        {"repo": REPO, "classname": "tests.test_shop", "name": "test_login", "expiry": "soon"},
        content_type="application/json",
    )
    missing = lead.post(
        "/api/v1/quarantine/",
        {"repo": REPO, "classname": "tests.test_shop", "name": "test_nope"},
        content_type="application/json",
    )
    nothing = lead.post("/api/v1/quarantine/", {"reason": "?"}, content_type="application/json")

    assert typo.status_code == 400 and typo.json() == {"expiry": ["unknown field"]}
    assert missing.status_code == 404
    assert nothing.status_code == 400
    assert not Quarantine.objects.exists()


@pytest.mark.django_db
def test_an_expired_quarantine_leaves_the_list_at_once_and_is_lifted_with_an_event(
    lead, ci
) -> None:
    soon = timezone.now() + timedelta(seconds=30)
    quarantine(lead, "test_refund", expires_at=soon.isoformat())
    quarantine(lead, "test_login")
    Quarantine.objects.filter(test__name="test_refund").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    listed = ci.get("/api/v1/quarantine/", {"repo": REPO}).json()["results"]
    lifted = lift_expired()

    assert [e["name"] for e in listed] == ["test_login"]
    assert lifted == 1 and list(Quarantine.objects.values_list("test__name", flat=True)) == [
        "test_login"
    ]
    event = QuarantineEvent.objects.get(test__name="test_refund", action="expired")
    assert event.actor == "flakeguard"


@pytest.mark.django_db
def test_every_change_is_an_audit_event_listed_per_test(lead) -> None:
    made = quarantine(lead, "test_checkout", reason="flaky on arm64", owner="alice")
    test_id = made["test"]
    changed = lead.patch(
        f"/api/v1/quarantine/{test_id}/", {"owner": "team-pay"}, content_type="application/json"
    )
    bad_change = lead.patch(
        f"/api/v1/quarantine/{test_id}/", {"test": 3}, content_type="application/json"
    )
    released = lead.delete(f"/api/v1/quarantine/{test_id}/?reason=fixed+in+%23912")

    events = lead.get(f"/api/v1/tests/{test_id}/quarantine-events/").json()

    assert changed.status_code == 200 and changed.json()["owner"] == "team-pay"
    assert bad_change.status_code == 400
    assert released.status_code == 204
    assert [(e["action"], e["actor"], e["owner"], e["reason"]) for e in events] == [
        ("released", "lead", "team-pay", "fixed in #912"),
        ("changed", "lead", "team-pay", "flaky on arm64"),
        ("quarantined", "lead", "alice", "flaky on arm64"),
    ]


@pytest.mark.django_db
def test_the_list_carries_an_etag_and_answers_304_when_unchanged(lead, ci) -> None:
    quarantine(lead, "test_checkout")
    first = ci.get("/api/v1/quarantine/", {"repo": REPO})
    unchanged = ci.get("/api/v1/quarantine/", {"repo": REPO}, HTTP_IF_NONE_MATCH=first["ETag"])
    quarantine(lead, "test_login")
    changed = ci.get("/api/v1/quarantine/", {"repo": REPO}, HTTP_IF_NONE_MATCH=first["ETag"])

    assert first.status_code == 200 and first["ETag"].startswith('"')
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
    assert len(changed.json()["results"]) == 2


@pytest.mark.django_db
def test_the_list_pages_by_cursor_up_to_a_cap(lead, ci) -> None:
    for name in ("test_checkout", "test_refund", "test_login"):
        quarantine(lead, name)

    names, url, pages = [], "/api/v1/quarantine/?repo=acme/quarantine&page_size=2", 0
    while url:
        page = ci.get(url).json()
        names += [entry["name"] for entry in page["results"]]
        url, pages = page["next"], pages + 1
    capped = ci.get("/api/v1/quarantine/", {"repo": REPO, "page_size": 100_000}).json()

    assert sorted(names) == ["test_checkout", "test_login", "test_refund"] and pages == 2
    assert len(capped["results"]) == 3
