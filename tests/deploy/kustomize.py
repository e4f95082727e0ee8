"""Renders the kustomize targets of deploy/ with ``kubectl kustomize``, offline, once per run.

kubectl is a requirement of these tests, as it is of CI: without it they fail
and say so, rather than skip and let broken manifests through.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
TARGETS = ("base", "overlays/dev", "overlays/prod")


def kubectl() -> str:
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            "kubectl is needed to render deploy/ (`kubectl kustomize`, no cluster involved): "
            "install it (https://kubernetes.io/docs/tasks/tools/) or set KUBECTL to its path",
            pytrace=False,
        )
    return path


@functools.cache
def _render(target: str) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"kubectl kustomize deploy/{target} failed:\n{done.stderr}", pytrace=False)
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def render(target: str) -> list[dict[str, Any]]:
    """Every object of ``deploy/<target>``, as kubectl apply -k would send it."""
    return copy.deepcopy(list(_render(target)))


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}
