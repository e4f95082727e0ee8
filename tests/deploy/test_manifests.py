"""The Kubernetes manifests: deploy/base and its dev and prod overlays, as rendered.

Each target is rendered with ``kubectl kustomize`` and every built-in object is
validated against the Kubernetes schemas of K8S_VERSION (kubernetes-validate,
strict: no unknown fields); KEDA's ScaledObjects, which have no schema there,
are checked field by field. Then what a review would look for: hardened pods,
resources, probes, pinned images, the wait for migrations, one worker per
queue, autoscalers, disruption budgets and network policies that select real
pods, and a Secret template that lists every key the pods read.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from jobs.queues import Queue
from tests.deploy.kustomize import DEPLOY, TARGETS, of_kind, render

# The schemas validated against: the oldest Kubernetes this targets (its
# fields, e.g. unhealthyPodEvictionPolicy, exist in every supported release).
K8S_VERSION = "1.32.0"
CRD_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}
APP_UID = 10001
TMP_DIRS = {"PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus"}
HEARTBEAT_DIR = "/tmp/flakeguard-heartbeat"
METRICS_PORT = 9808
# Deployments that must not start before the schema is migrated (Flower reads
# only the broker).
WAITS_FOR_MIGRATIONS = {"web", "worker", "beat"}
SECRET_TEMPLATE = DEPLOY / "base" / "secret.example.yaml"

targets = pytest.mark.parametrize("target", TARGETS)
autoscaled_targets = pytest.mark.parametrize("target", ["base", "overlays/prod"])


# --- reading the rendered objects ---------------------------------------------


def component(obj: dict[str, Any]) -> str:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")


def deployments(target: str) -> dict[str, dict[str, Any]]:
    return of_kind(render(target), "Deployment")


def workloads(target: str) -> dict[str, dict[str, Any]]:
    """Every object with a pod template: Deployments and Jobs."""
    docs = render(target)
    return {**of_kind(docs, "Deployment"), **of_kind(docs, "Job")}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(workload)["containers"]
    return container


def selects(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in match_labels.items())


def secret_keys() -> set[str]:
    return set(yaml.safe_load(SECRET_TEMPLATE.read_text())["stringData"])


def effective_env(target: str, container: dict[str, Any]) -> dict[str, str]:
    """The container's environment: ConfigMaps, the Secret template's keys, then ``env``."""
    configmaps = of_kind(render(target), "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]].get("data", {}))
        elif "secretRef" in source:
            assert source["secretRef"]["name"] == "flakeguard-env"
            env.update(dict.fromkeys(secret_keys(), "<secret>"))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "<ref>")
    return env


def worker_queue(deployment: dict[str, Any]) -> str:
    command = main_container(deployment)["command"]
    return command[command.index("-Q") + 1]


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_MEMORY_UNITS = {None: 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_MEMORY_UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(resource: str, value: str | int) -> float:
    text = str(value)
    if resource == "cpu":
        match = _CPU.match(text)
        assert match, f"cpu quantity {text!r}"
        return float(match[1]) / (1000 if match[2] else 1)
    match = _MEMORY.match(text)
    assert match, f"memory quantity {text!r}"
    return float(match[1]) * _MEMORY_UNITS[match[2]]


# --- schemas ---------------------------------------------------------------------


@targets
def test_every_builtin_object_matches_the_kubernetes_schema(target: str) -> None:
    problems = []
    for doc in render(target):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue  # no schema in kubernetes-validate; checked field by field below
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            problems.append(f"{name}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name}: {exc.message}")
    assert not problems, "\n".join(problems)


@targets
def test_scaled_objects_scale_a_rendered_worker_on_its_own_queue(target: str) -> None:
    docs = render(target)
    workers = {n: d for n, d in of_kind(docs, "Deployment").items() if component(d) == "worker"}
    for name, scaled in of_kind(docs, "ScaledObject").items():
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        spec = scaled["spec"]
        target_name = spec["scaleTargetRef"]["name"]
        assert target_name in workers, f"{name} scales {target_name}, which is not a worker"
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        # KEDA owns the count: a replicas field would reset it on every apply.
        assert "replicas" not in workers[target_name]["spec"], target_name
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["triggers"], f"{name} has no trigger"
        env = effective_env(target, main_container(workers[target_name]))
        for trigger in spec["triggers"]:
            assert trigger["type"] == "redis"
            meta = trigger["metadata"]
            assert meta["listName"] == worker_queue(workers[target_name])
            assert int(meta["listLength"]) > 0
            assert "address" in meta or "addressFromEnv" in meta
            for key in ("addressFromEnv", "passwordFromEnv"):
                if key in meta:
                    assert meta[key] in env, f"{name}: {meta[key]} is not in the worker's env"


@autoscaled_targets
def test_every_worker_but_the_scheduler_scales_on_its_queue(target: str) -> None:
    docs = render(target)
    workers = {n for n, d in of_kind(docs, "Deployment").items() if component(d) == "worker"}
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in of_kind(docs, "ScaledObject").values()}
    assert scaled == workers - {"flakeguard-worker-scheduler"}
    assert len(scaled) == len(of_kind(docs, "ScaledObject")), "one ScaledObject per worker"


@autoscaled_targets
def test_web_scales_on_cpu(target: str) -> None:
    (hpa,) = of_kind(render(target), "HorizontalPodAutoscaler").values()
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "flakeguard-web",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "replicas" not in deployments(target)["flakeguard-web"]["spec"]


# --- pods ------------------------------------------------------------------------


@targets
def test_every_pod_and_container_runs_hardened(target: str) -> None:
    for name, workload in workloads(target).items():
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == APP_UID, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(workload):
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["runAsUser"] == APP_UID, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            # A read-only root needs one writable place: /tmp on an emptyDir.
            (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]], where


@targets
def test_every_container_has_requests_and_limits(target: str) -> None:
    for name, workload in workloads(target).items():
        for container in containers(workload):
            where = f"{name}/{container['name']}"
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = quantity(resource, resources["requests"][resource])
                limit = quantity(resource, resources["limits"][resource])
                assert 0 < request <= limit, f"{where}: {resource} request above its limit"


@targets
def test_every_deployment_has_the_probes_of_its_role(target: str) -> None:
    roles = set()
    for name, deployment in deployments(target).items():
        role = component(deployment)
        roles.add(role)
        container = main_container(deployment)
        liveness = container["livenessProbe"]
        if role == "web":
            assert liveness["httpGet"] == {"path": "/health/live", "port": 8000}
            assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": 8000}
        elif role in ("worker", "beat"):
            probe = ["python", "-m", "flakeguard.probe", role]
            assert liveness["exec"]["command"] == probe, name
            assert container["startupProbe"]["exec"]["command"] == probe, name
        elif role == "flower":
            check = liveness.get("httpGet") or liveness.get("tcpSocket")
            assert check and check["port"] == 5555
            assert "readinessProbe" in container
        else:
            pytest.fail(f"{name}: unknown component {role!r}")
    assert roles == {"web", "worker", "beat", "flower"}


@targets
def test_every_image_is_one_pinned_release(target: str) -> None:
    images = {c["image"] for w in workloads(target).values() for c in containers(w)}
    # One image for web, workers, Beat, Flower and the migrations.
    (image,) = images
    match = re.fullmatch(r"(?P<name>[^:@]+)(?::(?P<tag>[\w.-]+))?(?:@sha256:[0-9a-f]{64})?", image)
    assert match, image
    assert match["tag"] and match["tag"] != "latest", f"{image} is not pinned"
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-][\w.]+)?", match["tag"]), f"{image}: not a release tag"


def test_prod_deploys_the_release_its_overlay_pins() -> None:
    kustomization = yaml.safe_load((DEPLOY / "overlays/prod/kustomization.yaml").read_text())
    (pin,) = [i for i in kustomization["images"] if i["name"] == "flakeguard"]
    expected = f"{pin['newName']}:{pin['newTag']}" + (
        f"@{pin['digest']}" if "digest" in pin else ""
    )
    images = {c["image"] for w in workloads("overlays/prod").values() for c in containers(w)}
    assert images == {expected}


@targets
def test_app_pods_wait_for_migrations_and_a_job_runs_them(target: str) -> None:
    for name, deployment in deployments(target).items():
        init = pod_spec(deployment).get("initContainers", [])
        if component(deployment) not in WAITS_FOR_MIGRATIONS:
            continue
        waits = [c for c in init if "manage.py migrate --check" in " ".join(c["command"])]
        assert waits, f"{name} does not wait for migrations"
        (wait,) = waits
        assert wait["command"][:2] == ["sh", "-c"] and "until " in wait["command"][2], (
            f"{name}: the wait must retry until the migrate Job is done"
        )
        assert wait["image"] == main_container(deployment)["image"]
    (job,) = of_kind(render(target), "Job").values()
    assert main_container(job)["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"]["backoffLimit"] >= 1


# --- workers and Beat -------------------------------------------------------------


@targets
def test_every_queue_has_exactly_one_worker_deployment(target: str) -> None:
    workers = {n: d for n, d in deployments(target).items() if component(d) == "worker"}
    served = sorted(worker_queue(d) for d in workers.values())
    assert served == sorted(q.value for q in Queue)
    for name, deployment in workers.items():
        command = main_container(deployment)["command"]
        queue = worker_queue(deployment)
        short = name.removeprefix("flakeguard-worker-")
        assert command == [
            "celery", "-A", "flakeguard", "worker", "-Q", queue,
            "-n", f"{short}@%h", "-c", command[9], "-l", "info",
        ]  # fmt: skip
        assert int(command[9]) >= 1
        if queue == Queue.SCHEDULER:
            assert command[9] == "1", "the sweeper and the fan-out run one at a time"
            assert deployment["spec"]["replicas"] == 1


@targets
def test_workers_serve_metrics_and_keep_their_files_on_tmp(target: str) -> None:
    for name, deployment in deployments(target).items():
        role = component(deployment)
        env = effective_env(target, main_container(deployment))
        if role in ("web", "worker"):
            assert env["PROMETHEUS_MULTIPROC_DIR"] == TMP_DIRS["PROMETHEUS_MULTIPROC_DIR"], name
        if role in ("worker", "beat"):
            assert env["FLAKEGUARD_HEARTBEAT_DIR"] == HEARTBEAT_DIR, name
        if role == "worker":
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            (port,) = main_container(deployment)["ports"]
            assert port == {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}
            assert int(env["FLAKEGUARD_METRICS_PORT"]) == METRICS_PORT
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == str(METRICS_PORT)
            assert annotations["prometheus.io/path"] == "/metrics"


@targets
def test_beat_is_one_replica_replaced_not_rolled(target: str) -> None:
    beats = [d for d in deployments(target).values() if component(d) == "beat"]
    (beat,) = beats
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    # The schedule is in the database: no --schedule file on a read-only disk.
    assert main_container(beat)["command"] == ["celery", "-A", "flakeguard", "beat", "-l", "info"]


def test_flower_takes_its_password_from_the_secret() -> None:
    (flower,) = [d for d in deployments("base").values() if component(d) == "flower"]
    container = main_container(flower)
    assert container["command"] == ["celery", "-A", "flakeguard", "flower", "--port=5555"]
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container["env"] if "valueFrom" in v}
    assert refs["FLOWER_BASIC_AUTH"] == {"name": "flakeguard-env", "key": "FLOWER_BASIC_AUTH"}


# --- disruption budgets, services, network policies ---------------------------------


@targets
def test_disruption_budgets_cover_web_and_every_worker(target: str) -> None:
    docs = render(target)
    pods = {n: pod_labels(d) for n, d in of_kind(docs, "Deployment").items()}
    covered = set()
    for name, pdb in of_kind(docs, "PodDisruptionBudget").items():
        selected = {
            n
            for n, labels in pods.items()
            if selects(pdb["spec"]["selector"]["matchLabels"], labels)
        }
        assert selected, f"PodDisruptionBudget {name} selects no pod"
        covered |= selected
    wanted = {
        n for n, d in of_kind(docs, "Deployment").items() if component(d) in ("web", "worker")
    }
    assert wanted <= covered


@targets
def test_services_send_to_existing_pods_and_ports(target: str) -> None:
    docs = render(target)
    for name, service in of_kind(docs, "Service").items():
        backends = [
            d for d in of_kind(docs, "Deployment").values()
            if selects(service["spec"]["selector"], pod_labels(d))
        ]  # fmt: skip
        assert backends, f"Service {name} selects no pod"
        ports = {p.get("name") for b in backends for p in main_container(b).get("ports", [])}
        ports |= {p["containerPort"] for b in backends for p in main_container(b).get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: no port {port['targetPort']}"


@targets
def test_network_policies_deny_by_default_and_open_each_served_port(target: str) -> None:
    docs = render(target)
    policies = of_kind(docs, "NetworkPolicy")
    assert any(
        p["spec"]["podSelector"] == {} and "Ingress" in p["spec"]["policyTypes"]
        and not p["spec"].get("ingress")
        for p in policies.values()
    ), "no default-deny ingress policy"  # fmt: skip
    for name, policy in policies.items():
        match = policy["spec"]["podSelector"].get("matchLabels", {})
        if match:
            assert any(selects(match, pod_labels(d)) for d in workloads(target).values()), (
                f"NetworkPolicy {name} selects no pod"
            )
    for name, deployment in deployments(target).items():
        labels = pod_labels(deployment)
        rules = [
            rule
            for p in policies.values()
            if selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)
            for rule in p["spec"].get("ingress", [])
        ]
        for port in main_container(deployment).get("ports", []):
            allowing = [
                r for r in rules
                if any(p["port"] in (port["containerPort"], port["name"]) for p in r.get("ports", []))
            ]  # fmt: skip
            assert allowing, f"{name}: nothing may reach port {port['containerPort']}"
            if port["containerPort"] == METRICS_PORT:
                # Unauthenticated metrics: only from named peers (Prometheus).
                assert all(r.get("from") for r in allowing), f"{name}: metrics open to all"


# --- configuration and the Secret -----------------------------------------------------


def test_secret_template_is_valid_and_never_rendered() -> None:
    secret = yaml.safe_load(SECRET_TEMPLATE.read_text())
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["metadata"]["name"] == "flakeguard-env"
    base = yaml.safe_load((DEPLOY / "base/kustomization.yaml").read_text())
    assert SECRET_TEMPLATE.name not in base["resources"]
    for target in TARGETS:
        assert not of_kind(render(target), "Secret"), f"{target} renders a Secret"


@targets
def test_secret_template_lists_every_key_the_pods_read(target: str) -> None:
    keys = secret_keys()
    assert {
        "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS",
        "FLAKEGUARD_METRICS_TOKEN", "FLOWER_BASIC_AUTH", "GITHUB_WEBHOOK_SECRET",
    } <= keys  # fmt: skip
    for name, workload in workloads(target).items():
        for container in containers(workload):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "flakeguard-env" and ref["key"] in keys, name


@pytest.mark.parametrize("target", ["base", "overlays/prod"])
def test_behind_tls_the_secure_settings_hold(target: str) -> None:
    (config,) = of_kind(render(target), "ConfigMap").values()
    data = config["data"]
    assert data["DEBUG"] == "false"
    assert data["SECURE_PROXY_SSL_HEADER"] == "HTTP_X_FORWARDED_PROTO,https"
    assert data["SECURE_SSL_REDIRECT"] == "true"
    assert data["SESSION_COOKIE_SECURE"] == "true"
    assert data["CSRF_COOKIE_SECURE"] == "true"
    assert int(data["SECURE_HSTS_SECONDS"]) > 0


def test_dev_runs_one_replica_of_everything_without_autoscalers() -> None:
    docs = render("overlays/dev")
    assert {d["spec"]["replicas"] for d in of_kind(docs, "Deployment").values()} == {1}
    assert not of_kind(docs, "ScaledObject")
    assert not of_kind(docs, "HorizontalPodAutoscaler")
    (config,) = of_kind(docs, "ConfigMap").values()
    assert config["data"]["DEBUG"] == "false"


def test_prod_has_at_least_the_base_capacity() -> None:
    base, prod = render("base"), render("overlays/prod")
    base_hpa, prod_hpa = (
        of_kind(d, "HorizontalPodAutoscaler")["flakeguard-web"] for d in (base, prod)
    )
    assert prod_hpa["spec"]["minReplicas"] > base_hpa["spec"]["minReplicas"]
    for name, scaled in of_kind(prod, "ScaledObject").items():
        original = of_kind(base, "ScaledObject")[name]["spec"]
        assert scaled["spec"]["minReplicaCount"] >= original["minReplicaCount"], name
        assert scaled["spec"]["maxReplicaCount"] >= original["maxReplicaCount"], name
    assert {n for n, d in of_kind(prod, "Namespace").items()} == {"flakeguard"}
