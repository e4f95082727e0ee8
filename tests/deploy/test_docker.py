"""The image, the compose stack and its monitoring, checked without a Docker daemon.

Nothing here builds or starts a container: the Dockerfile is read instruction
by instruction, the compose file, Prometheus' configuration and rules and the
Grafana files are parsed, and each is held to what the other side expects:
every queue has a worker running the same command as on Kubernetes, every
image is pinned, every alert and panel reads metrics FlakeGuard exports.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.queues import Queue
from tests.deploy.kustomize import REPO_ROOT, of_kind, render
from tests.deploy.promql import FLAKEGUARD_METRICS, metric_names, unknown_metrics

DOCKER = REPO_ROOT / "docker"
APP_IMAGE_PACKAGES = ["flakeguard", "jobs", "ingest", "analysis", "polling", "notify", "templates"]
APP_IMAGE_FILES = ["manage.py", "pyproject.toml", "README.md", "constraints.txt"]
WEB_COMMAND = ["gunicorn", "--config", "python:flakeguard.gunicorn", "flakeguard.wsgi:application"]
WORKER_PROBE = ["CMD", "python", "-m", "flakeguard.probe", "worker"]
_DURATION = re.compile(r"^\d+[smhdwy]$")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments left out."""
    instructions, pending = [], ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continued instruction, as Docker reads it
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, rest in dockerfile():
        if keyword == "FROM":
            current = rest.split()[-1] if " AS " in rest.upper() else rest
            result[current] = []
        elif current is not None:
            result[current].append((keyword, rest))
    return result


def compose() -> dict[str, Any]:
    return load_yaml(DOCKER / "compose.yaml")


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def app_services() -> dict[str, dict[str, Any]]:
    """The services run from FlakeGuard's own image."""
    return {n: s for n, s in services().items() if "build" in s}


def worker_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in app_services().items() if s.get("command", [])[3:4] == ["worker"]}


def image_is_pinned(image: str) -> bool:
    match = re.fullmatch(r"(?P<name>[^:@]+)(?::(?P<tag>[\w.-]+))?(?:@sha256:[0-9a-f]{64})?", image)
    return bool(match and match["tag"] and match["tag"] != "latest")


def without_concurrency(command: list[str]) -> list[str]:
    """A worker command with its -c value blanked: capacity differs by place, the rest may not."""
    masked = list(command)
    masked[masked.index("-c") + 1] = "N"
    return masked


# --- the image ---------------------------------------------------------------------


def test_image_builds_dependencies_apart_and_runs_unprivileged() -> None:
    by_stage = stages()
    assert list(by_stage) == ["builder", "runtime"]
    args = dict(
        rest.split("=", 1) for keyword, rest in dockerfile() if keyword == "ARG" and "=" in rest
    )
    # The base image: a Python patch release, slim, never latest.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", args["PYTHON_IMAGE"])
    builder_runs = " ".join(rest for keyword, rest in by_stage["builder"] if keyword == "RUN")
    assert "pip install" in builder_runs and "-c constraints.txt" in builder_runs
    runtime = by_stage["runtime"]
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in runtime
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and re.fullmatch(r"10001(:10001)?", users[-1]), "numeric non-root user"
    assert json.loads(dict(runtime)["CMD"]) == WEB_COMMAND


def test_image_copies_every_app_package_and_collects_static_files() -> None:
    runtime = stages()["runtime"]
    copied = {
        source
        for keyword, rest in runtime
        if keyword == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    }
    for path in APP_IMAGE_PACKAGES + APP_IMAGE_FILES:
        assert path in copied, f"the image does not copy {path}"
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert "WHITENOISE_USE_FINDERS=0" in env
    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert "manage.py collectstatic --noinput" in runs


def test_image_healthcheck_asks_web_liveness_with_python() -> None:
    (check,) = [rest for keyword, rest in stages()["runtime"] if keyword == "HEALTHCHECK"]
    command = json.loads(check[check.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]  # slim images have no curl
    assert "http://127.0.0.1:" in command[2] and "/health/live" in command[2]
    assert "'8000'" in command[2]


def test_build_context_sends_what_the_image_copies() -> None:
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore
    assert set(APP_IMAGE_PACKAGES + APP_IMAGE_FILES) <= included


def test_gunicorn_and_the_manifest_validator_are_pinned() -> None:
    pins = dict(
        line.split("==", 1)
        for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins["gunicorn"])
    assert any(dep.startswith("gunicorn") for dep in project["dependencies"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins["kubernetes-validate"])
    assert any(
        dep.startswith("kubernetes-validate") for dep in project["optional-dependencies"]["dev"]
    )


# --- the compose stack -----------------------------------------------------------------


def test_every_compose_image_is_pinned() -> None:
    for name, service in services().items():
        assert image_is_pinned(service["image"]), f"{name}: {service['image']} is not pinned"
    (own,) = {s["image"] for s in app_services().values()}
    assert {s["build"]["dockerfile"] for s in app_services().values()} == {"docker/Dockerfile"}
    assert own.startswith("flakeguard:")


def test_every_queue_has_one_compose_worker_running_the_kubernetes_command() -> None:
    kubernetes = {
        name.removeprefix("flakeguard-"): d["spec"]["template"]["spec"]["containers"][0]["command"]
        for name, d in of_kind(render("base"), "Deployment").items()
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    }
    workers = worker_services()
    queues = sorted(s["command"][s["command"].index("-Q") + 1] for s in workers.values())
    assert queues == sorted(q.value for q in Queue)
    assert set(workers) == set(kubernetes)
    for name, service in workers.items():
        same = without_concurrency(service["command"]) == without_concurrency(kubernetes[name])
        assert same, f"{name} runs {service['command']}, its Deployment {kubernetes[name]}"
        if "scheduler" in service["command"]:
            assert service["command"][service["command"].index("-c") + 1] == "1"


def test_app_services_start_after_a_successful_migrate() -> None:
    everything = services()
    migrate = everything["migrate"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["restart"] == "no", "a one-shot must not be restarted after it succeeded"
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "pg_isready" in everything["postgres"]["healthcheck"]["test"]
    assert "redis-cli" in everything["redis"]["healthcheck"]["test"]
    for name, service in app_services().items():
        if name in ("migrate", "flower"):
            continue
        after = service["depends_on"]
        assert after["migrate"] == {"condition": "service_completed_successfully"}, name
        assert after["postgres"] == {"condition": "service_healthy"}, name


def test_app_services_run_as_on_kubernetes_with_a_check_of_their_role() -> None:
    for name, service in app_services().items():
        assert service["user"] == "10001:10001", name
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name
        assert service["cap_drop"] == ["ALL"], name
        command = service.get("command", WEB_COMMAND)
        check = service["healthcheck"]
        if name == "migrate":
            assert check == {"disable": True}
        elif command[3:4] == ["worker"]:
            assert check["test"] == WORKER_PROBE, name
        elif command[3:4] == ["beat"]:
            assert command == ["celery", "-A", "flakeguard", "beat", "-l", "info"]
            assert check["test"] == ["CMD", "python", "-m", "flakeguard.probe", "beat"]
        elif command[3:4] == ["flower"]:
            assert "/healthcheck" in " ".join(check["test"])
        else:
            assert name == "web" and "/health/live" in " ".join(check["test"])


def test_compose_states_its_plain_http_settings() -> None:
    for name, service in app_services().items():
        env = service["environment"]
        assert env["SECURE_SSL_REDIRECT"] == "false", name
        assert env["SESSION_COOKIE_SECURE"] == "false", name
        assert env["CSRF_COOKIE_SECURE"] == "false", name
        assert env["SECURE_HSTS_SECONDS"] == "0", name
        assert env["SECRET_KEY"] and env["DATABASE_URL"].startswith("postgres://")
        assert env["REDIS_URL"].startswith("redis://redis:")
    for name in ["web", *worker_services()]:
        env = services()[name]["environment"]
        assert env["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus", name
        assert env["FLAKEGUARD_METRICS_TOKEN"], name


def test_flower_asks_for_a_password_and_ports_stay_local() -> None:
    flower = services()["flower"]
    assert flower["command"] == ["celery", "-A", "flakeguard", "flower", "--port=5555"]
    assert re.fullmatch(
        r"\$\{FLOWER_BASIC_AUTH:-[^:}]+:[^}]+\}", flower["environment"]["FLOWER_BASIC_AUTH"]
    )
    for name, service in services().items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


# --- Prometheus and Grafana ---------------------------------------------------------------


def test_prometheus_scrapes_web_with_the_token_and_every_worker() -> None:
    config = load_yaml(DOCKER / "prometheus/prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    web = jobs["flakeguard-web"]
    assert [t for sc in web["static_configs"] for t in sc["targets"]] == ["web:8000"]
    assert web["metrics_path"] == "/metrics"
    assert web["authorization"]["type"] == "Bearer"
    # The token file is the compose config holding web's FLAKEGUARD_METRICS_TOKEN.
    prometheus = services()["prometheus"]
    (mount,) = [
        c for c in prometheus["configs"] if c["target"] == web["authorization"]["credentials_file"]
    ]
    token = compose()["configs"][mount["source"]]["content"]
    assert token == services()["web"]["environment"]["FLAKEGUARD_METRICS_TOKEN"]
    workers = {t for sc in jobs["flakeguard-workers"]["static_configs"] for t in sc["targets"]}
    assert workers == {f"{name}:9808" for name in worker_services()}
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def alert_rules() -> list[dict[str, Any]]:
    rules = load_yaml(DOCKER / "prometheus/alerts.yml")
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_alert_rules_parse_and_read_only_exported_metrics() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert _DURATION.match(rule.get("for", "0s")), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert metric_names(rule["expr"]), rule["alert"]
        # `up` is Prometheus' own series for each target.
        assert not unknown_metrics(rule["expr"], also=frozenset({"up"})), rule["alert"]


@pytest.mark.parametrize(
    ("metric", "condition", "duration"),
    [
        ("flakeguard_dead_jobs", "> 0", "5m"),
        ("flakeguard_oldest_pending_job_age_seconds", "> 600", None),
        ("flakeguard_beat_heartbeat_timestamp_seconds", "> 120", None),
        ("flakeguard_github_rate_limit_remaining", "< 500", None),
        ("flakeguard_workers", "< 1", None),
        ("flakeguard_queue_depth", ">", None),
    ],
)
def test_an_alert_watches(metric: str, condition: str, duration: str | None) -> None:
    matching = [
        r for r in alert_rules() if metric in metric_names(r["expr"]) and condition in r["expr"]
    ]
    assert matching, f"no alert on {metric} {condition}"
    if duration:
        assert any(r.get("for") == duration for r in matching)


def dashboard() -> dict[str, Any]:
    return json.loads((DOCKER / "grafana/dashboards/flakeguard.json").read_text())


def panel_exprs() -> dict[str, list[str]]:
    return {
        panel["title"]: [target["expr"] for target in panel["targets"]]
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
    }


def test_dashboard_panels_read_only_exported_metrics() -> None:
    board = dashboard()
    assert board["uid"] == "flakeguard" and board["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for title, exprs in panel_exprs().items():
        assert exprs, f"panel {title!r} has no query"
        for expr in exprs:
            assert metric_names(expr), title
            assert not unknown_metrics(expr), f"panel {title!r}: {unknown_metrics(expr)}"
    for panel in board["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_dashboard_shows_jobs_queues_github_analysis_and_http() -> None:
    read = {
        name for exprs in panel_exprs().values() for expr in exprs for name in metric_names(expr)
    }
    wanted = {
        "flakeguard_jobs_processed_total",
        "flakeguard_job_duration_seconds_bucket",
        "flakeguard_queue_depth",
        "flakeguard_oldest_pending_job_age_seconds",
        "flakeguard_dead_jobs",
        "flakeguard_github_requests_total",
        "flakeguard_github_rate_limit_remaining",
        "flakeguard_tests_analyzed_total",
        "flakeguard_flaky_tests",
        "django_http_requests_total_by_view_transport_method_total",
        "django_http_requests_latency_seconds_by_view_method_bucket",
    }
    assert wanted <= read, wanted - read
    families = {m.removesuffix("_bucket") for m in read if m.startswith("flakeguard_")}
    assert families <= set(FLAKEGUARD_METRICS)


def test_grafana_provisions_the_datasource_and_dashboard_the_panels_use() -> None:
    (source,) = load_yaml(DOCKER / "grafana/provisioning/datasources/prometheus.yaml")[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    board = dashboard()
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["current"]["value"] == source["uid"]
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in (source["uid"], f"${{{variable['name']}}}")
    (provider,) = load_yaml(DOCKER / "grafana/provisioning/dashboards/flakeguard.yaml")["providers"]
    mounts = dict(
        v.rsplit(":", 1)[0].split(":", 1)
        for v in services()["grafana"]["volumes"]
        if v.startswith("./")
    )
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, kind) (rate(flakeguard_job_duration_seconds_bucket"
        '{kind=~"ingest.*"}[$__rate_interval]))) > on (kind) group_left flakeguard_dead_jobs '
        "and time() - max(flakeguard_beat_heartbeat_timestamp_seconds offset 5m) > 120"
    )
    assert metric_names(expr) == {
        "flakeguard_job_duration_seconds_bucket",
        "flakeguard_dead_jobs",
        "flakeguard_beat_heartbeat_timestamp_seconds",
    }
    assert unknown_metrics("rate(flakeguard_jobs_processd_total[5m])") == {
        "flakeguard_jobs_processd_total"
    }
