"""Who sees and does what: roles, token scopes and 404 for every other repository's objects."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from analysis.models import Incident, Quarantine
from ingest.access import grant
from ingest.identity import test_identity
from ingest.models import ApiToken, Repository, Upload
from ingest.tokens import create_token, hash_token
from tests.analysis.factories import QuarantineFactory, TestCaseFactory, TestScoreFactory
from tests.factories import RepositoryFactory, WorkflowRunFactory

MINE, THEIRS = "acme/mine", "acme/theirs"


@dataclass
class Objects:
    repository: Repository
    test: int  # a scored, quarantined test
    free_test: int  # a scored test nobody quarantined
    run: int
    incident: int
    upload: int
    token: int


def objects_of(full_name: str) -> Objects:
    repository = RepositoryFactory(full_name=full_name)
    quarantined = QuarantineFactory(test=TestCaseFactory(repository=repository)).test
    TestScoreFactory(test=quarantined)
    free = TestCaseFactory(
        repository=repository,
        classname="tests.test_free",
        name="test_free",
        file="",
        identity=test_identity("tests.test_free", "", "test_free")[0],
    )
    TestScoreFactory(test=free)
    run = WorkflowRunFactory(repository=repository)
    incident = Incident.objects.create(
        repository=repository, run=run, github_run_id=run.run_id, run_attempt=1, job="linux",
        started_at=run.started_at, tests_failed=10, tests_in_job=12, rule="co-failure",
    )  # fmt: skip
    upload = Upload.objects.create(repository=repository, run_id=run.run_id, run_attempt=1)
    token, _ = create_token(repository=repository, scope="read", name="theirs")
    return Objects(repository, quarantined.pk, free.pk, run.pk, incident.pk, upload.pk, token.pk)


@pytest.fixture
def world(db) -> tuple[Objects, Objects]:
    return objects_of(MINE), objects_of(THEIRS)


def as_user(role: str | None, mine: Objects, *, staff: bool = False) -> Client:
    user = User.objects.create_user(f"u-{role}-{staff}", password="x", is_staff=staff)
    if role:
        grant(user=user, repository=mine.repository, role=role)
    client = Client()
    client.force_login(user)
    return client


def as_token(scope: str, mine: Objects, *, user: User | None = None) -> Client:
    _, secret = create_token(repository=mine.repository, scope=scope, user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def reads_of(objects: Objects) -> list[str]:
    """Every GET that names one repository's objects."""
    return [
        f"/api/v1/tests/?repo={objects.repository.full_name}",
        f"/api/v1/tests/{objects.test}/",
        f"/api/v1/tests/{objects.test}/quarantine-events/",
        f"/api/v1/runs/?repo={objects.repository.full_name}",
        f"/api/v1/runs/{objects.run}/",
        f"/api/v1/incidents/?repo={objects.repository.full_name}",
        f"/api/v1/incidents/{objects.incident}/",
        f"/api/v1/quarantine/?repo={objects.repository.full_name}",
        f"/api/v1/quarantine/{objects.test}/",
        f"/api/v1/uploads/{objects.upload}/",
        f"/api/v1/tokens/?repo={objects.repository.full_name}",
        f"/api/v1/tokens/{objects.token}/",
        f"/repos/{objects.repository.full_name}/",
    ]


def upload_form(repo: str) -> dict[str, object]:
    return {
        "repo": repo,
        "run_id": "77",
        "sha": "a" * 40,
        "started_at": "2026-11-01T10:00:00Z",
        "files": SimpleUploadedFile("junit.xml", b"<testsuite/>"),
    }


def writes_to(client: Client, objects: Objects) -> dict[str, int]:
    """Every write naming one repository's objects, with the status each got."""
    name = objects.repository.full_name
    return {
        "quarantine by id": client.post(
            "/api/v1/quarantine/", {"test": objects.free_test}, content_type="application/json"
        ).status_code,
        "quarantine by identity": client.post(
            "/api/v1/quarantine/",
            {"repo": name, "classname": "tests.test_free", "name": "test_free"},
            content_type="application/json",
        ).status_code,
        "change": client.patch(
            f"/api/v1/quarantine/{objects.test}/", {"owner": "x"}, content_type="application/json"
        ).status_code,
        "release": client.delete(f"/api/v1/quarantine/{objects.test}/").status_code,
        "upload": client.post("/api/v1/uploads/", upload_form(name)).status_code,
        "revoke": client.delete(f"/api/v1/tokens/{objects.token}/").status_code,
    }


PRINCIPALS = [
    "viewer", "maintainer", "admin", "no role", "upload token", "read token", "write token",
    "personal write token of a viewer",
]  # fmt: skip


def principal(kind: str, mine: Objects) -> Client:
    if kind in ("viewer", "maintainer", "admin"):
        return as_user(kind, mine)
    if kind == "no role":
        return as_user(None, mine)
    if kind == "personal write token of a viewer":
        viewer = User.objects.create_user("personal", password="x")
        grant(user=viewer, repository=mine.repository, role="viewer")
        return as_token("write", mine, user=viewer)
    return as_token(kind.split()[0], mine)


@pytest.mark.parametrize("kind", PRINCIPALS)
@pytest.mark.django_db
def test_another_repository_s_objects_are_404_for_every_user_and_token(world, kind) -> None:
    mine, theirs = world
    client = principal(kind, mine)

    reads = {url: client.get(url) for url in reads_of(theirs)}
    writes = writes_to(client, theirs)

    page = reads.pop(f"/repos/{THEIRS}/")
    if "token" in kind:  # tokens are for the API; the dashboard asks for a sign-in
        assert page.status_code == 302 and "/login" in page["Location"]
    else:
        assert page.status_code == 404
    assert {url: r.status_code for url, r in reads.items() if r.status_code != 404} == {}
    assert set(writes.values()) == {404}, writes
    assert Quarantine.objects.filter(repository=theirs.repository).count() == 1
    assert not Quarantine.objects.filter(test_id=theirs.free_test).exists()
    assert ApiToken.objects.get(pk=theirs.token).revoked_at is None
    assert not Upload.objects.filter(repository=theirs.repository, run_id=77).exists()
    # Lists that span repositories hold only the caller's.
    for url in ("/api/v1/tests/", "/api/v1/runs/", "/api/v1/incidents/", "/api/v1/quarantine/"):
        listed = client.get(url)
        if listed.status_code == 200:
            assert THEIRS not in listed.content.decode(), url


# What each principal may do on its own repository: reads allowed, and the
# status of each write (404 where the principal may not even read).
OWN = {
    "viewer": (True, {"quarantine by id": 403, "change": 403, "release": 403, "upload": 403,
                      "revoke": 404}),
    "maintainer": (True, {"quarantine by id": 201, "change": 200, "release": 204, "upload": 202,
                          "revoke": 404}),
    "admin": (True, {"quarantine by id": 201, "change": 200, "release": 204, "upload": 202,
                     "revoke": 204}),
    "no role": (False, {"quarantine by id": 404, "change": 404, "release": 404, "upload": 404,
                        "revoke": 404}),
    "upload token": (False, {"quarantine by id": 403, "change": 403, "release": 403,
                             "upload": 202, "revoke": 404}),
    "read token": (True, {"quarantine by id": 403, "change": 403, "release": 403, "upload": 403,
                          "revoke": 404}),
    "write token": (True, {"quarantine by id": 201, "change": 200, "release": 204, "upload": 403,
                           "revoke": 404}),
    "personal write token of a viewer": (
        True, {"quarantine by id": 403, "change": 403, "release": 403, "upload": 403,
               "revoke": 404},
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", PRINCIPALS)
@pytest.mark.django_db
def test_each_role_and_scope_does_what_it_is_given_on_its_own_repository(world, kind) -> None:
    mine, _ = world
    client = principal(kind, mine)
    may_read, expected = OWN[kind]

    tests = client.get("/api/v1/tests/", {"repo": MINE})
    quarantine_list = client.get("/api/v1/quarantine/", {"repo": MINE})
    writes = writes_to(client, mine)
    writes.pop("quarantine by identity")  # the same test as by id: already quarantined

    assert tests.status_code == (200 if may_read else 404)
    # The quarantine list is what CI reads: upload tokens read it too.
    assert quarantine_list.status_code == (200 if may_read or kind == "upload token" else 404)
    assert writes == expected


@pytest.mark.django_db
def test_staff_see_every_repository(world) -> None:
    mine, theirs = world
    client = as_user(None, mine, staff=True)
    for url in reads_of(mine) + reads_of(theirs):
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_the_dashboard_lists_only_granted_repositories(world) -> None:
    mine, _ = world
    page = as_user("viewer", mine).get("/").content.decode()
    assert MINE in page and THEIRS not in page


@pytest.mark.django_db
def test_create_token_prints_the_token_alone_and_keeps_only_its_hash(world) -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_token", "--repo", MINE, "--scope", "upload", "--name", "ci", stdout=out, stderr=err
    )
    secret = out.getvalue().strip()

    assert secret.startswith("fg_") and "\n" not in secret and len(secret) > 40
    token = ApiToken.objects.get(name="ci")
    assert token.key_hash == hash_token(secret) and secret not in str(token.__dict__)
    assert "shown only now" in err.getvalue() and secret not in err.getvalue()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/quarantine/", {"repo": MINE}).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    listed = as_user("admin", world[0]).get("/api/v1/tokens/", {"repo": MINE}).json()["results"]
    assert {"name": "ci", "scope": "upload"}.items() <= listed[0].items()
    assert "key_hash" not in listed[0]


@pytest.mark.django_db
def test_a_revoked_token_is_refused(world) -> None:
    mine, _ = world
    admin = as_user("admin", mine)
    token, secret = create_token(repository=mine.repository, scope="read")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/tests/", {"repo": MINE}).status_code == 200

    assert admin.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204

    refused = client.get("/api/v1/tests/", {"repo": MINE})
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == "Bearer"


@pytest.mark.django_db
def test_grant_command_gives_a_role(world) -> None:
    User.objects.create_user("carol", password="x")
    call_command("grant", "carol", MINE, "--role", "maintainer", stderr=io.StringIO())
    client = Client()
    client.force_login(User.objects.get(username="carol"))
    assert client.get("/api/v1/tests/", {"repo": MINE}).status_code == 200
    assert client.get("/api/v1/tests/", {"repo": THEIRS}).status_code == 404


@pytest.mark.django_db
def test_failed_authentications_are_rate_limited_per_client(world, settings) -> None:
    settings.FLAKEGUARD_AUTH_FAILURES_PER_MINUTE = 5
    mine, _ = world
    _, good = create_token(repository=mine.repository, scope="read")
    guesser = Client(HTTP_AUTHORIZATION="Bearer fg_guess", REMOTE_ADDR="10.0.0.9")

    statuses = [guesser.get("/api/v1/tests/").status_code for _ in range(7)]
    # Even the right token is refused from that client until the minute is over...
    blocked = Client(HTTP_AUTHORIZATION=f"Bearer {good}", REMOTE_ADDR="10.0.0.9").get(
        "/api/v1/tests/"
    )
    # ...while another client is not held up.
    other = Client(HTTP_AUTHORIZATION=f"Bearer {good}", REMOTE_ADDR="10.0.0.10").get(
        "/api/v1/tests/"
    )

    assert statuses == [401] * 5 + [429] * 2
    assert blocked.status_code == 429 and 0 < int(blocked["Retry-After"]) <= 60
    assert other.status_code == 200


@pytest.mark.django_db
def test_behind_a_proxy_clients_are_told_apart_by_forwarded_address(world, settings) -> None:
    from rest_framework.settings import api_settings

    settings.FLAKEGUARD_AUTH_FAILURES_PER_MINUTE = 2
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    api_settings.reload()
    try:
        guesser = Client(HTTP_AUTHORIZATION="Bearer fg_guess", REMOTE_ADDR="10.0.0.1",
                         HTTP_X_FORWARDED_FOR="203.0.113.7")  # fmt: skip
        statuses = [guesser.get("/api/v1/tests/").status_code for _ in range(3)]
        _, good = create_token(repository=world[0].repository, scope="read")
        neighbour = Client(HTTP_AUTHORIZATION=f"Bearer {good}", REMOTE_ADDR="10.0.0.1",
                           HTTP_X_FORWARDED_FOR="198.51.100.4")  # fmt: skip
        assert statuses == [401, 401, 429]
        assert neighbour.get("/api/v1/tests/").status_code == 200  # same proxy, other client
    finally:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": None}
        api_settings.reload()
