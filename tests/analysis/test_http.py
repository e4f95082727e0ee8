"""The analysis API and admin: the flaky list, quarantines, scoring settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from analysis.models import Quarantine, ScoringConfig
from analysis.services import recompute_repository
from ingest.access import grant
from ingest.models import Repository, TestCase
from jobs.models import Job, JobKind
from tests.analysis.test_services import REPO, store


@pytest.fixture
def scored(tmp_path: Path) -> Repository:
    for run in range(1, 21):
        store(tmp_path, run, {"test_steady": "passed", "test_shaky": "passed"})
    store(tmp_path, 21, {"test_steady": "passed", "test_shaky": "failed"}, sha="d" * 40)
    store(tmp_path, 21, {"test_steady": "passed", "test_shaky": "passed"}, attempt=2, sha="d" * 40)
    repository = Repository.objects.get(full_name=REPO)
    recompute_repository(repository=repository)
    return repository


@pytest.fixture
def user_client(client, scored):
    """A maintainer of the scored repository, signed in."""
    user = User.objects.create_user("dev", password="x")
    grant(user=user, repository=scored, role="maintainer")
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_tests_api_lists_the_flaky_first_with_readable_evidence(scored, user_client) -> None:
    response = user_client.get("/api/v1/tests/", {"repo": REPO})

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [r["name"] for r in rows] == ["test_shaky", "test_steady"]
    shaky = rows[0]
    assert shaky["is_flaky"] and shaky["status"] == "flaky" and shaky["quarantined"] is False
    assert shaky["runs"] == 22 and shaky["failures"] == 1
    assert "failed and passed on ddddddd" in shaky["evidence"][0]
    flaky_only = user_client.get("/api/v1/tests/", {"repo": REPO, "status": "flaky"}).json()
    assert [r["name"] for r in flaky_only["results"]] == ["test_shaky"]


@pytest.mark.django_db
def test_quarantine_api_adds_lists_and_releases(scored, user_client) -> None:
    shaky = TestCase.objects.get(name="test_shaky")

    created = user_client.post(
        "/api/v1/quarantine/", {"test": shaky.pk, "reason": "tracked in #88"}, format="json"
    )
    again = user_client.post("/api/v1/quarantine/", {"test": shaky.pk}, format="json")
    listed = user_client.get("/api/v1/quarantine/", {"repo": REPO}).json()["results"]
    status = user_client.get("/api/v1/tests/", {"status": "quarantined"}).json()["results"]

    assert created.status_code == 201, created.content
    assert created.json()["created_by"] == "dev" and created.json()["repo"] == REPO
    assert again.status_code == 400
    assert [q["name"] for q in listed] == ["test_shaky"]
    assert [t["name"] for t in status] == ["test_shaky"] and status[0]["is_flaky"]

    assert user_client.delete(f"/api/v1/quarantine/{shaky.pk}/").status_code == 204
    assert not Quarantine.objects.exists()


@pytest.mark.django_db
def test_analysis_api_needs_a_signed_in_user(scored, client) -> None:
    assert client.get("/api/v1/tests/").status_code in (401, 403)
    assert client.get("/api/v1/quarantine/").status_code in (401, 403)


@pytest.mark.django_db
def test_admin_quarantines_selected_tests_and_saves_scoring_settings(scored, client) -> None:
    client.force_login(User.objects.create_superuser("ops", password="x"))
    shaky = TestCase.objects.get(name="test_shaky")

    response = client.post(
        "/admin/analysis/testscore/",
        {"action": "quarantine", "_selected_action": [shaky.pk]},
    )
    assert response.status_code == 302
    assert Quarantine.objects.get().created_by == "ops"
    assert client.get(f"/admin/analysis/testscore/{shaky.pk}/change/").status_code == 200

    response = client.post(
        "/admin/analysis/scoringconfig/add/",
        {"repository": scored.pk, "overrides": '{"isolated_weight": 0.4}'},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ScoringConfig.objects.get().overrides == {"isolated_weight": 0.4}
    assert Job.objects.filter(kind=JobKind.RECOMPUTE_REPO, state="pending").count() == 1

    bad = client.post(
        "/admin/analysis/scoringconfig/add/",
        {"repository": scored.pk, "overrides": '{"isolated_wieght": 0.4}'},
    )
    assert bad.status_code == 200 and "unknown scoring setting" in bad.content.decode()


@pytest.mark.django_db
def test_dashboard_lists_repositories_and_their_flaky_tests_with_evidence(
    scored, user_client
) -> None:
    signed_out = Client().get("/")
    assert signed_out.status_code == 302 and signed_out["Location"].startswith("/login/")

    index = user_client.get("/")
    page = user_client.get(f"/repos/{REPO}/")
    shaky = TestCase.objects.get(name="test_shaky")
    detail = user_client.get(f"/repos/{REPO}/tests/{shaky.pk}/").content.decode()

    assert index.status_code == 200 and REPO in index.content.decode()
    text = page.content.decode()
    assert page.status_code == 200
    # Worst first: the flaky test above the steady one.
    assert "test_shaky" in text and text.index("test_shaky") < text.index("test_steady")
    assert "failed and passed on ddddddd" in detail
    assert user_client.get("/repos/acme/unknown/").status_code == 404
