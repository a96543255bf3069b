"""Offline checks of deploy/: Kubernetes manifests, images, alerts and the dashboard (no cluster).

Tools: ``kubectl`` (renders with its built-in kustomize) and ``promtool`` (Debian packages
kubernetes-client/kubectl and prometheus; .ci/run installs them when missing) are required: a
missing one fails with the command that installs it. The Node.js checks (kubernetes-models,
@grafana/schema with tsc) use the packages `make deploy-tools` installs under
var/deploy-tools/node (pinned by tests/deploy/package-lock.json); without them those checks skip
unless FACEGATE_DEPLOY_STRICT=1 (`make deploy-check` and .ci/run set it), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
NODE_MODULES = REPO / "var" / "deploy-tools" / "node" / "node_modules"
STRICT = os.environ.get("FACEGATE_DEPLOY_STRICT") == "1"


def require_tool(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; the deploy checks need it: {install}", pytrace=False)
    return path


def node_modules() -> Path:
    """The cached npm packages, or skip (fail under FACEGATE_DEPLOY_STRICT=1)."""
    ready = NODE_MODULES.is_dir() and shutil.which("node") is not None
    if not ready:
        message = "npm packages for the deploy checks are not installed: run `make deploy-tools` (or `make deploy-check`)"
        if STRICT:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return NODE_MODULES


def kustomize(path: Path) -> list[dict]:
    kubectl = require_tool("kubectl", "apt-get install -y kubectl (or kubernetes-client)")
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path.relative_to(REPO)} failed:\n{done.stderr}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def kustomizations() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """{overlay: its objects as kubectl kustomize renders them}."""
    return {name: kustomize(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def all_objects(rendered) -> list[tuple[str, dict]]:
    return [(overlay, obj) for overlay, objs in rendered.items() for obj in objs]
