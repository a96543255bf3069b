"""The officer console in both overlays: one replica (sessions are in memory), HTTP probes on
/healthz, locked down like the servers, a configuration ConsoleSettings accepts as the container
gets it, and in production TLS with a client certificate to the gateway and a Secure cookie."""

from __future__ import annotations

import pytest

from tests.deploy import checks


def console_of(objs):
    return checks.find(objs, "Deployment", "console")


def settings_in_container(objs, monkeypatch):
    from console.config import ConsoleSettings

    env = checks.container_env(objs, checks.pod_spec(console_of(objs))["containers"][0])
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return env, ConsoleSettings()


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_one_console_replica_with_http_probes_on_healthz(rendered, overlay) -> None:
    w = console_of(rendered[overlay])
    assert w["spec"]["replicas"] == 1 and w["spec"]["strategy"]["type"] == "Recreate"
    (c,) = checks.pod_spec(w)["containers"]
    assert c["command"] == ["python", "-m", "console"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": checks.CONSOLE_PORT}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[kind]["httpGet"] == {"path": "/healthz", "port": "http"}, kind
    assert checks.check_workload(rendered[overlay], w) == []  # resources, non-root, read-only root
    assert checks.check_env(rendered[overlay], w, checks.settings_env_names()) == []


def test_dev_console_talks_plaintext_to_the_gateway_service(rendered, monkeypatch) -> None:
    _, settings = settings_in_container(rendered["dev"], monkeypatch)
    assert (settings.host, settings.port, settings.gateway_target) == ("0.0.0.0", 8080, "gateway:50050")
    assert settings.gateway_ca_file is None and not settings.cookie_secure
    assert set(settings.metrics_links) == set(checks.SERVICES)


def test_production_console_uses_tls_with_a_client_certificate(rendered, monkeypatch) -> None:
    objs = rendered["production"]
    _, settings = settings_in_container(objs, monkeypatch)
    assert settings.cookie_secure
    spec = checks.pod_spec(console_of(objs))
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v.get("secret", {}).get("secretName") for v in spec["volumes"]}
    assert volumes["console-tls"] == "console-tls"
    for path in (settings.gateway_ca_file, settings.gateway_cert_file, settings.gateway_key_file):
        assert str(path.parent) == mounts["console-tls"], path
    image = spec["containers"][0]["image"]
    assert image == "registry.example.org/facegate/console:0.1.0"
