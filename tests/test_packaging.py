"""Per-service dependency sets: the slim services stay free of TensorFlow, OpenCV and mtcnn.

Two halves, both offline and fast:

* the lock files: the gateway, watchlist and docverify locks list none of the heavy packages, every
  per-service lock agrees with the full lock, and each lock holds its group's direct pins from
  pyproject.toml (so a pin changed without `make lock` fails here);
* the servers: in fresh interpreters, the gateway, watchlist and docverify servers are imported,
  built, started through the real runtime and warmed up, then ``sys.modules`` is inspected. One
  interpreter runs all three in the full dev environment (TensorFlow is installed there, so an
  incidental import would show); one per service also refuses every package its lock does not
  list, which is what an image built from ``requirements/<service>.lock`` would have.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tools.lock import EXTRA_GROUPS, GROUPS, canonical, direct_requirements, read_lock

REPO = Path(__file__).resolve().parents[1]
FULL_LOCK = REPO / "requirements.lock"
LOCK_DIR = REPO / "requirements"
SLIM = ("gateway", "watchlist", "docverify")
#: Distributions a slim service must never pull in (PEP 503 names).
HEAVY = re.compile(r"^(tensorflow(-.*)?|tf-keras|keras|mtcnn|opencv(-.*)?)$")
#: Modules that must stay unimported by a slim server.
HEAVY_MODULES = ("tensorflow", "keras", "mtcnn", "cv2")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _lock(path: Path) -> dict[str, str]:
    assert path.is_file(), f"{path.relative_to(REPO)} is missing: run `make lock`"
    return {canonical(name): version for name, version in read_lock(path).items()}


# ---- the lock files ---------------------------------------------------------------------------


def test_every_optional_group_has_a_lock() -> None:
    groups = set(_pyproject()["project"]["optional-dependencies"]) - {"dev", "all"}
    assert groups == {*GROUPS, *EXTRA_GROUPS}, (
        "tools/lock.py GROUPS or EXTRA_GROUPS must list every optional group but dev and all"
    )
    for group in (*GROUPS, *EXTRA_GROUPS):
        _lock(LOCK_DIR / f"{group}.lock")


@pytest.mark.parametrize("group", SLIM)
def test_slim_locks_carry_nothing_heavy(group: str) -> None:
    heavy = sorted(name for name in _lock(LOCK_DIR / f"{group}.lock") if HEAVY.match(name))
    assert not heavy, f"requirements/{group}.lock pulls in {heavy}"


@pytest.mark.parametrize("group", (*GROUPS, *EXTRA_GROUPS))
def test_group_lock_versions_equal_the_full_lock(group: str) -> None:
    full = _lock(FULL_LOCK)
    pins = _lock(LOCK_DIR / f"{group}.lock")
    missing = sorted(name for name in pins if name not in full)
    if group in EXTRA_GROUPS:  # bench-only packages (dlib-bin) stay out of the dev lock on purpose
        pins = {name: version for name, version in pins.items() if name in full}
        missing = []
    assert not missing, f"requirements/{group}.lock lists packages requirements.lock lacks: {missing}"
    differ = {name: (version, full[name]) for name, version in pins.items() if full[name] != version}
    assert not differ, f"requirements/{group}.lock versions differ from requirements.lock: {differ}"


@pytest.mark.parametrize("group", (*GROUPS, *EXTRA_GROUPS, "dev"))
def test_lock_holds_the_direct_pins(group: str) -> None:
    path = FULL_LOCK if group == "dev" else LOCK_DIR / f"{group}.lock"
    pins = _lock(path)
    for requirement in direct_requirements(_pyproject(), group):
        name, _, version = requirement.partition("==")
        name = canonical(name.strip())
        assert name in pins, f"{path.relative_to(REPO)} lacks {name}: run `make lock`"
        if version:
            assert pins[name] == version.strip(), (
                f"{path.relative_to(REPO)} pins {name}=={pins[name]}, pyproject.toml {version}: run `make lock`"
            )


# ---- the servers ------------------------------------------------------------------------------

# Runs in a fresh interpreter: argv[1] = JSON {"services": [...], "allowed": [dist names] or null}.
# With "allowed", every top-level module that belongs to an installed distribution outside that set
# is refused (ModuleNotFoundError), as it would be missing from an image built from the lock.
PROBE = r"""
import importlib.abc, importlib.metadata, json, re, sys

config = json.loads(sys.argv[1])
refused = set()

if config["allowed"] is not None:
    def canonical(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    allowed = {canonical(d) for d in config["allowed"]} | {"facegate"}
    blocked = {
        top
        for top, dists in importlib.metadata.packages_distributions().items()
        if not any(canonical(d) in allowed for d in dists)
    }

    class NotInLock(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in blocked:
                refused.add(top)
                raise ModuleNotFoundError(f"No module named {name!r} (not in the lock)", name=name)
            return None

    sys.meta_path.insert(0, NotInLock())

from services.runtime.config import RuntimeSettings, load_settings
from services.runtime.server import start_server

SERVERS = {
    "gateway": ("gateway.server", "GatewayService", "gateway.config", "GatewaySettings"),
    "watchlist": (
        "services.watchlist.server", "WatchlistService", "services.watchlist.config", "WatchlistSettings"
    ),
    "docverify": (
        "services.docverify.server", "DocVerifyService", "services.docverify.config", "DocverifySettings"
    ),
}
serving = {}
for label in config["services"]:
    server_mod, servicer_name, config_mod, settings_name = SERVERS[label]
    servicer_cls = getattr(importlib.import_module(server_mod), servicer_name)
    settings_cls = getattr(importlib.import_module(config_mod), settings_name)
    runtime = load_settings(RuntimeSettings)
    servicer = servicer_cls(load_settings(settings_cls, port=0, metrics_port=-1), runtime)
    running = start_server(label=label, servicer=servicer, runtime=runtime, port=0, metrics_port=-1)
    try:
        servicer.warmup()
        running.set_serving(True)
        serving[label] = running.port
    finally:
        running.drain(0)
        servicer.close()

loaded = sorted({name.partition(".")[0] for name in sys.modules})
print("PROBE " + json.dumps({"serving": serving, "loaded": loaded, "refused": sorted(refused)}))
"""


def _start_probe(services: tuple[str, ...], allowed: list[str] | None, tmp: Path) -> subprocess.Popen:
    from gateway.keys import generate_dev_keys

    name = f"{'-'.join(services)}-{allowed is not None}"
    generate_dev_keys(tmp / f"{name}-keys.json", tmp / f"{name}-keys.env")  # the gateway needs a key file
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MILVUS_URI": str(tmp / f"{name}.db"),
        "FACEGATE_GATEWAY_KEY_FILE": str(tmp / f"{name}-keys.json"),
        "FACEGATE_GATEWAY_AUDIT_LOG": str(tmp / f"{name}-audit.log"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    config = json.dumps({"services": list(services), "allowed": allowed})
    return subprocess.Popen(
        [sys.executable, "-c", PROBE, config],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen) -> dict:
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, f"probe failed (exit {proc.returncode}):\n{err[-4000:]}"
    return json.loads(lines[-1][len("PROBE ") :])


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Start every probe at once (they are independent), then collect: {"all" | service: result}."""
    tmp = tmp_path_factory.mktemp("packaging")
    procs = {"all": _start_probe(SLIM, None, tmp)}
    for service in SLIM:
        allowed = list(read_lock(LOCK_DIR / f"{service}.lock"))
        procs[service] = _start_probe((service,), allowed, tmp)
    return {name: _result(proc) for name, proc in procs.items()}


def test_slim_servers_start_without_tensorflow(probes: dict[str, dict]) -> None:
    result = probes["all"]
    assert set(result["serving"]) == set(SLIM)
    assert all(port > 0 for port in result["serving"].values())
    loaded = [name for name in HEAVY_MODULES if name in result["loaded"]]
    assert not loaded, f"starting {SLIM} imported {loaded}"


@pytest.mark.parametrize("service", SLIM)
def test_slim_server_starts_with_only_its_lock(probes: dict[str, dict], service: str) -> None:
    # Optional imports a library tries and survives (grpc's grpc_tools shim, pyarrow's cloudpickle)
    # may be refused; anything the server needs would have failed the probe.
    result = probes[service]
    assert result["serving"].get(service, 0) > 0, result
    loaded = [name for name in HEAVY_MODULES if name in result["loaded"]]
    assert not loaded, f"{service} imported {loaded} with only requirements/{service}.lock"
