"""The small HTTP surface operators and tools rely on: health, metrics, API schema."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import pytest
from django.core.management import call_command


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound by us, never listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_liveness_answers_without_touching_the_database(client):
    # No django_db mark: any query here would fail the test.
    response = client.get("/health/live")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_is_ok_when_database_and_broker_answer(client, redis_url, settings):
    settings.REDIS_URL = redis_url

    response = client.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "migrations": "ok",
        "broker": "ok",
    }
    assert all(check["ms"] >= 0 for check in body["checks"].values())


@pytest.mark.django_db
def test_readiness_reports_an_unreachable_broker_but_stays_ready(client, settings, closed_port):
    # Webhooks and uploads still land as committed jobs; the sweeper sends them later.
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"

    response = client.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["broker"]["status"] == "error"
    assert body["checks"]["broker"]["error"].startswith("ConnectionError")


@pytest.mark.django_db
def test_probes_answer_whatever_the_host_and_other_paths_keep_the_host_check(client) -> None:
    pod = "10.42.7.19:8000"  # what the kubelet sends: the pod's own address

    live = client.get("/health/live", HTTP_HOST=pod)
    ready = client.get("/health/ready", HTTP_HOST=pod)
    other = client.get("/api/v1/schema/", HTTP_HOST=pod)

    assert (live.status_code, ready.status_code) == (200, 200)
    assert other.status_code == 400  # DisallowedHost, as before


@pytest.mark.django_db  # the job-table collector reads the database on each scrape
def test_metrics_serve_prometheus_text(client, settings):
    settings.FLAKEGUARD_METRICS_TOKEN = "scrape-token-1234"
    client.get("/health/live")  # one request through the middleware to count

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-1234")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "# TYPE django_http_requests_before_middlewares_total counter" in text
    assert "django_http_requests_total_by_method_total" in text


@pytest.mark.django_db
def test_openapi_schema_describes_the_jobs_api(client):
    response = client.get("/api/v1/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "FlakeGuard API"
    assert "/api/v1/jobs/" in schema["paths"]
    assert "post" in schema["paths"]["/api/v1/jobs/{id}/retry/"]


@pytest.mark.django_db
def test_openapi_schema_is_served_as_yaml_by_default(client):
    response = client.get("/api/v1/schema/")

    assert response.status_code == 200
    text = response.content.decode()
    assert text.startswith("openapi: 3.")
    assert "/api/v1/jobs/:" in text


@pytest.mark.django_db
def test_runs_api_needs_a_signed_in_user(client, django_user_model) -> None:
    assert client.get("/api/v1/runs/").status_code in (401, 403)
    user = django_user_model.objects.create_user("dev", password="pw")
    client.force_login(user)
    assert client.get("/api/v1/runs/").status_code == 200


@pytest.mark.django_db
def test_openapi_schema_validates_and_names_the_filters_and_the_bearer_token(client):
    from openapi_spec_validator import validate

    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    validate(schema)  # raises on any departure from OpenAPI 3
    # drf-spectacular's own check: every view, filter and parameter typed.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())
    params = {p["name"] for p in schema["paths"]["/api/v1/tests/"]["get"]["parameters"]}
    assert {"status", "score_min", "score_max", "owner", "search", "branch", "ordering",
            "cursor", "page_size"} <= params  # fmt: skip
    runs = {p["name"] for p in schema["paths"]["/api/v1/runs/"]["get"]["parameters"]}
    assert {"branch", "sha", "event", "started_after", "started_before"} <= runs
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "/api/v1/uploads/" in schema["paths"] and "/api/v1/quarantine/" in schema["paths"]


@pytest.mark.django_db
def test_the_schema_shows_in_a_browser_and_the_docs_page_needs_no_cdn(client):
    import re

    as_browser = client.get("/api/v1/schema/", HTTP_ACCEPT="text/html,*/*;q=0.8")
    docs = client.get("/api/v1/docs/")

    assert as_browser["Content-Type"].startswith("text/plain")
    assert as_browser.content.decode().startswith("openapi: 3.")
    assert docs.status_code == 200
    page = docs.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/") for a in assets), assets  # nothing from elsewhere
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
