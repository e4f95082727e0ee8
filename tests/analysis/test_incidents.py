"""Infrastructure incidents on PostgreSQL: found from stored runs, recorded once, listed by the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from analysis.incidents import record_incidents
from analysis.loading import iter_histories, load_context
from analysis.models import Incident, TestScore
from analysis.scoring import ScoringSettings, describe_event, score_test
from analysis.services import recompute_repository
from ingest.access import grant
from ingest.models import Repository, TestCase, WorkflowRun
from tests.analysis.test_services import BASE, REPO, store

TESTS = [f"test_{n}" for n in range(12)]


def history_with_a_dead_runner(tmp_path: Path, repo: str = REPO) -> int:
    """Twenty clean runs, then a run whose job lost 10 of its 12 tests (re-run: all pass)."""
    for run in range(1, 21):
        store(tmp_path, run, dict.fromkeys(TESTS, "passed"), repo=repo)
    dead = {name: "error" if n < 10 else "passed" for n, name in enumerate(TESTS)}
    run_pk = store(tmp_path, 21, dead, sha="d" * 40, repo=repo)
    store(tmp_path, 21, dict.fromkeys(TESTS, "passed"), attempt=2, sha="d" * 40, repo=repo)
    for run in range(22, 30):
        store(tmp_path, run, dict.fromkeys(TESTS, "passed"), repo=repo)
    recompute_repository(repository=Repository.objects.get(full_name=repo))
    return run_pk


@pytest.fixture
def user(db) -> User:
    return User.objects.create_user("dev", password="x")


@pytest.fixture
def user_client(client, user):
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_import_counts_the_most_common_failure_fingerprints_of_each_job(
    tmp_path: Path,
) -> None:
    run_pk = history_with_a_dead_runner(tmp_path)
    run = WorkflowRun.objects.get(pk=run_pk)

    ((fingerprint, count),) = run.job_fingerprints["linux"]
    assert count == 10 and len(fingerprint) == 16
    assert run.job_loads == {"linux": [12, 10]}
    assert WorkflowRun.objects.get(run_id=1).job_fingerprints == {}


@pytest.mark.django_db
def test_record_incidents_keeps_one_row_per_job_attempt_with_its_figures(tmp_path: Path) -> None:
    run_pk = history_with_a_dead_runner(tmp_path)
    repository = Repository.objects.get(full_name=REPO)
    run = WorkflowRun.objects.get(pk=run_pk)
    every_run = list(WorkflowRun.objects.values_list("pk", flat=True))

    assert record_incidents(repository=repository, run_pks=every_run) == 1

    incident = Incident.objects.get()
    assert (incident.repository, incident.run_id, incident.github_run_id) == (
        repository,
        run_pk,
        21,
    )
    assert (incident.run_attempt, incident.job, incident.started_at) == (1, "linux", run.started_at)
    assert (incident.tests_failed, incident.tests_in_job) == (10, 12)
    assert incident.usual_failures == 0.0
    assert incident.rule == "co-failure, shared fingerprint"
    assert incident.fingerprints == [
        {"fingerprint": run.job_fingerprints["linux"][0][0], "tests": 10, "marks_incident": True}
    ]


@pytest.mark.django_db
def test_record_incidents_is_idempotent_and_drops_what_is_no_longer_an_incident(
    tmp_path: Path,
) -> None:
    run_pk = history_with_a_dead_runner(tmp_path)
    repository = Repository.objects.get(full_name=REPO)

    assert record_incidents(repository=repository, run_pks=[run_pk]) == 1
    first = Incident.objects.get()
    assert record_incidents(repository=repository, run_pks=[run_pk, run_pk]) == 1
    again = Incident.objects.get()
    assert again.pk == first.pk
    assert (again.tests_failed, again.rule, again.fingerprints) == (
        first.tests_failed,
        first.rule,
        first.fingerprints,
    )
    quiet_run = WorkflowRun.objects.get(run_id=5).pk
    assert record_incidents(repository=repository, run_pks=[quiet_run]) == 0
    assert record_incidents(repository=repository, run_pks=[]) == 0
    assert Incident.objects.count() == 1

    # Settings under which the run is no incident: its row goes.
    strict = ScoringSettings(incident_min_tests=50, mass_failure_cutoff=0.0)
    assert record_incidents(repository=repository, run_pks=[run_pk], settings=strict) == 0
    assert not Incident.objects.exists()


@pytest.mark.django_db
def test_tests_the_dead_runner_failed_are_stable_not_flaky(tmp_path: Path) -> None:
    history_with_a_dead_runner(tmp_path)

    scores = {s.test.name: s for s in TestScore.objects.select_related("test")}
    assert {s.verdict for s in scores.values()} == {"stable"}
    hit = scores["test_0"]
    assert (hit.score, hit.failures, hit.components["outage_failures"]) == (0.0, 1, 1)


@pytest.mark.django_db
def test_a_full_rescore_of_a_test_the_runner_failed_says_why_its_failure_was_not_counted(
    tmp_path: Path,
) -> None:
    history_with_a_dead_runner(tmp_path)
    repository = Repository.objects.get(full_name=REPO)
    context = load_context(repository)
    test = TestCase.objects.get(name="test_0")
    ((_, rows),) = iter_histories([test.pk], context=context)

    verdict = score_test(rows, context, ScoringSettings())
    assert verdict.status == "stable"
    assert [describe_event(e) for e in verdict.evidence] == [
        "failed with 9 other tests in linux, run 21 attempt 1 (ddddddd): infrastructure, "
        "not counted"
    ]


@pytest.mark.django_db
def test_incidents_api_lists_a_repository_s_incidents_newest_first(
    tmp_path: Path, user, user_client
) -> None:
    for repo in (REPO, "acme/other"):
        history_with_a_dead_runner(tmp_path / repo.replace("/", "_"), repo=repo)
        repository = Repository.objects.get(full_name=repo)
        record_incidents(
            repository=repository,
            run_pks=WorkflowRun.objects.filter(repository=repository).values_list("pk", flat=True),
        )
    grant(user=user, repository=Repository.objects.get(full_name=REPO), role="viewer")

    assert Client().get("/api/v1/incidents/").status_code == 401  # no anonymous reads
    response = user_client.get("/api/v1/incidents/", {"repo": REPO})

    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert row["repo"] == REPO
    assert (row["run_id"], row["run_attempt"], row["job"]) == (21, 1, "linux")
    assert (row["tests_failed"], row["tests_in_job"]) == (10, 12)
    assert row["rule"] == "co-failure, shared fingerprint"
    assert row["fingerprints"][0]["tests"] == 10
    assert row["started_at"].startswith(str(BASE.year))
    assert user_client.get(f"/api/v1/incidents/{row['id']}/").json()["id"] == row["id"]
    # The other repository's incidents are not the viewer's to see.
    assert len(user_client.get("/api/v1/incidents/").json()["results"]) == 1
    assert user_client.get("/api/v1/incidents/", {"repo": "acme/other"}).status_code == 404
    other = Incident.objects.get(repository__full_name="acme/other")
    assert user_client.get(f"/api/v1/incidents/{other.pk}/").status_code == 404


@pytest.mark.django_db
def test_admin_lists_incidents_read_only(tmp_path: Path, admin_client) -> None:
    run_pk = history_with_a_dead_runner(tmp_path)
    record_incidents(repository=Repository.objects.get(full_name=REPO), run_pks=[run_pk])
    incident = Incident.objects.get()

    listing = admin_client.get("/admin/analysis/incident/")
    assert listing.status_code == 200
    assert b"linux" in listing.content
    assert admin_client.get("/admin/analysis/incident/add/").status_code == 403
    page = admin_client.get(f"/admin/analysis/incident/{incident.pk}/change/")
    assert page.status_code == 200 and b"Save" not in page.content
