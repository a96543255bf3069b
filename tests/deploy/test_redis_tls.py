"""Production Redis speaks the services' mutual TLS, checked two ways.

By rule: every service that uses Redis in production has a rediss:// URL, which it accepts beside its
FACEGATE_MTLS_* (services/runtime/redis_client.py refuses plaintext to another host there).

By running it: the rendered ConfigMaps' redis.conf, sentinel.conf and haproxy.cfg, and the proxy's
init command, with only paths and ports changed, start a real primary, a replica, two Sentinels and
HAProxy on loopback, with certificates from a test CA in place of the cert-manager secret. A client
with the services' TLS options then writes through the proxy (only the primary takes writes, so the
proxy's TLS checks found it), the replica receives the write over TLS, the Sentinels see the replica
and each other (quorum), a client without a certificate from the CA is refused, and when the
primary is killed the Sentinels promote the replica and writes through the proxy reach it.
"""

from __future__ import annotations

import copy
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from services.runtime.config import ConfigError, RuntimeSettings, load_settings
from services.runtime.redis_client import tls_options
from tests.deploy import checks
from tests.deploy.conftest import require_tool
from tests.runtime.conftest import runtime_for
from tests.support import free_ports, make_pki

#: The settings that hold a Redis URL, by service.
REDIS_SETTINGS = {
    "embedding": "FACEGATE_EMBEDDING_REDIS_URL",
    "gateway": "FACEGATE_GATEWAY_REDIS_URL",
    "watchlist": "FACEGATE_WATCHLIST_CHANGE_FEED_URL",
}


def redis_urls(objs: list[dict]) -> dict[str, tuple[str, RuntimeSettings]]:
    """{setting: (its URL, the runtime settings its container gets)} for every Redis user."""
    out = {}
    for w in checks.facegate_workloads(objs):
        setting = REDIS_SETTINGS.get(checks.app_of(w))
        if setting is None:
            continue
        env = checks.container_env(objs, checks.pod_spec(w)["containers"][0])
        mtls = {k[len("FACEGATE_") :].lower(): v for k, v in env.items() if k.startswith("FACEGATE_MTLS_")}
        out[setting] = (env.get(setting, ""), load_settings(RuntimeSettings, **mtls))
    return out


def test_production_services_reach_redis_over_tls_and_accept_it(rendered) -> None:
    urls = redis_urls(rendered["production"])
    assert set(urls) == set(REDIS_SETTINGS.values())
    for setting, (url, runtime) in urls.items():
        assert url.startswith("rediss://redis:6379/"), setting
        assert (
            tls_options(url, runtime, setting)["ssl_certfile"] == checks.MTLS_ENV["FACEGATE_MTLS_CERT_FILE"]
        )
    for url, runtime in redis_urls(rendered["dev"]).values():  # dev: no mesh, one plain Redis pod
        assert tls_options(url, runtime, "dev") == {}


def test_a_plaintext_production_redis_url_would_stop_the_service(rendered) -> None:
    objs = copy.deepcopy(rendered["production"])
    config = next(
        o for o in checks.by_kind(objs, "ConfigMap") if checks.name_of(o).startswith("gateway-config")
    )
    config["data"]["FACEGATE_GATEWAY_REDIS_URL"] = "redis://redis:6379/0"
    url, runtime = redis_urls(objs)["FACEGATE_GATEWAY_REDIS_URL"]
    with pytest.raises(ConfigError, match="FACEGATE_GATEWAY_REDIS_URL"):
        tls_options(url, runtime, "FACEGATE_GATEWAY_REDIS_URL")


# ---- the rendered configuration, run -------------------------------------------------------------


def config_data(objs: list[dict], name: str) -> dict[str, str]:
    return checks.find(objs, "ConfigMap", name)["data"]


def start(exits: ExitStack, args: list[str], log: Path) -> subprocess.Popen:
    out = log.open("w")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()

    exits.callback(stop)
    return proc


def eventually(check: Callable[[], object], what: str, logs: list[Path], timeout_s: float = 30) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if result:
                return result
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in logs if p.exists())
            pytest.fail(f"{what} within {timeout_s:.0f} s\n{tails}")
        time.sleep(0.2)


@pytest.fixture
def production_redis(rendered, tmp_path_factory) -> Iterator[dict]:
    """The production Redis set (primary, replica, two Sentinels, HAProxy) on loopback, from the
    rendered configuration; yields ports, the processes, the PKI and the logs."""
    require_tool("redis-server", "apt-get install -y --no-install-recommends redis-server")
    haproxy = require_tool("haproxy", "apt-get install -y --no-install-recommends haproxy")
    objs = rendered["production"]
    sentinel_cm, proxy_cm = config_data(objs, "redis-sentinel"), config_data(objs, "redis-haproxy")
    root = tmp_path_factory.mktemp("redis-prod")
    pki = make_pki(root, ("redis", "gateway"))
    tls, pem = root / "tls", root / "tls-pem"
    tls.mkdir()
    pem.mkdir()
    for name, src in (("tls.crt", "redis.pem"), ("tls.key", "redis.key"), ("ca.crt", "ca.pem")):
        (tls / name).write_bytes(pki[src].read_bytes())
    primary, replica, sentinel, sentinel_2, proxy, absent = free_ports(6)

    def local(text: str, data: Path) -> str:
        return (
            text.replace("/tls-pem/", f"{pem}/")
            .replace("/tls/", f"{tls}/")
            .replace("dir /data", f"dir {data}")
        )

    # the proxy's init container, as rendered: join its certificate and key
    (init,) = checks.pod_spec(checks.find(objs, "Deployment", "redis-haproxy"))["initContainers"]
    subprocess.run([*init["command"][:-1], local(init["command"][-1], root)], check=True)

    logs: list[Path] = []
    procs: dict[str, subprocess.Popen] = {}
    with ExitStack() as exits:
        for name, port, extra in (
            ("primary", primary, ""),
            ("replica", replica, f"replicaof 127.0.0.1 {primary}\n"),
        ):
            data = root / name
            data.mkdir()
            conf = local(sentinel_cm["redis.conf"], data).replace("tls-port 6379", f"tls-port {port}")
            (root / f"{name}.conf").write_text(conf + "bind 127.0.0.1\n" + extra)
            logs.append(root / f"{name}.log")
            procs[name] = start(exits, ["redis-server", str(root / f"{name}.conf")], logs[-1])
        for name, port in (("sentinel", sentinel), ("sentinel-2", sentinel_2)):
            data = root / name
            data.mkdir()
            conf = local(sentinel_cm["sentinel.conf"], data).replace("tls-port 26379", f"tls-port {port}")
            conf = conf.replace("@MASTER@ 6379", f"127.0.0.1 {primary}").replace("@SELF@", "127.0.0.1")
            (root / f"{name}.conf").write_text(conf + "bind 127.0.0.1\n")
            logs.append(root / f"{name}.log")
            procs[name] = start(exits, ["redis-server", str(root / f"{name}.conf"), "--sentinel"], logs[-1])

        cfg = local(proxy_cm["haproxy.cfg"], root).replace("bind :6379", f"bind 127.0.0.1:{proxy}")
        for i, port in enumerate((primary, replica, absent)):
            cfg = cfg.replace(f"redis-{i}.redis-headless:6379", f"127.0.0.1:{port}")
        (root / "haproxy.cfg").write_text(cfg)
        logs.append(root / "haproxy.log")
        checked = subprocess.run(
            [haproxy, "-c", "-f", str(root / "haproxy.cfg")], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        start(exits, [haproxy, "-db", "-f", str(root / "haproxy.cfg")], logs[-1])
        yield {
            "pki": pki,
            "primary": primary,
            "replica": replica,
            "sentinel": sentinel,
            "sentinels": (sentinel, sentinel_2),
            "proxy": proxy,
            "procs": procs,
            "logs": logs,
        }


def service_client(setup: dict, port: int) -> redis.Redis:
    """A client as a production service makes it: rediss:// with its FACEGATE_MTLS_* files."""
    url = f"rediss://127.0.0.1:{port}/0"
    tls = tls_options(url, runtime_for(setup["pki"], "gateway"), "TEST")
    return redis.Redis.from_url(url, socket_timeout=2, **tls)


def test_the_rendered_redis_set_works_over_mutual_tls(production_redis) -> None:
    setup, logs = production_redis, production_redis["logs"]
    through_proxy = service_client(setup, setup["proxy"])
    # only the primary takes writes (the replica answers READONLY): the proxy's TLS checks found it
    eventually(
        lambda: through_proxy.set("facegate:tls-check", b"template"), "a write through the proxy", logs
    )
    replica = service_client(setup, setup["replica"])
    eventually(
        lambda: replica.get("facegate:tls-check") == b"template", "the replica copying the write", logs
    )
    sentinel = service_client(setup, setup["sentinel"])
    eventually(
        lambda: len(sentinel.execute_command("SENTINEL", "REPLICAS", "facegate")) == 1,
        "the Sentinel finding the replica through the primary",
        logs,
    )
    eventually(  # the two Sentinels found each other over TLS: together they can fail over
        lambda: sentinel.execute_command("SENTINEL", "CKQUORUM", "facegate").startswith(b"OK 2 usable"),
        "the Sentinels reaching their quorum",
        logs,
    )
    for client in (through_proxy, replica, sentinel):
        client.close()


def test_when_the_primary_dies_the_sentinels_promote_the_replica_and_the_proxy_follows(
    production_redis,
) -> None:
    """The failure production Redis exists for, over TLS end to end: the Sentinels agree the primary
    is down (down-after 5 s), promote the replica, and HAProxy's TLS checks route writes to it."""
    setup, logs = production_redis, production_redis["logs"]
    through_proxy = service_client(setup, setup["proxy"])
    sentinel = service_client(setup, setup["sentinel"])
    eventually(lambda: through_proxy.set("facegate:before", b"1"), "a write through the proxy", logs)
    eventually(
        lambda: sentinel.execute_command("SENTINEL", "CKQUORUM", "facegate").startswith(b"OK 2 usable"),
        "the Sentinels reaching their quorum",
        logs,
    )
    replica = service_client(setup, setup["replica"])
    eventually(lambda: replica.get("facegate:before") == b"1", "the replica copying the write", logs)
    for port in setup["sentinels"]:  # as after any while in production: every Sentinel knows the replica
        other = service_client(setup, port)
        eventually(
            lambda other=other: other.execute_command("SENTINEL", "REPLICAS", "facegate"),
            "every Sentinel finding the replica",
            logs,
        )
        other.close()
    setup["procs"]["primary"].kill()
    promoted = [b"127.0.0.1", str(setup["replica"]).encode()]
    eventually(
        lambda: sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "facegate") == promoted,
        "the Sentinels promoting the replica",
        logs,
        timeout_s=60,
    )
    eventually(lambda: through_proxy.set("facegate:after", b"2"), "a write through the proxy after", logs)
    assert replica.get("facegate:after") == b"2" and replica.get("facegate:before") == b"1"
    for client in (through_proxy, sentinel, replica):
        client.close()


def test_the_rendered_redis_set_refuses_a_client_without_the_ca_certificate(production_redis) -> None:
    pki = production_redis["pki"]
    for port in (production_redis["proxy"], production_redis["primary"]):
        stranger = redis.Redis.from_url(
            f"rediss://127.0.0.1:{port}/0",
            socket_timeout=2,
            ssl_ca_certs=str(pki["ca.pem"]),
            ssl_certfile=str(pki["outsider.pem"]),
            ssl_keyfile=str(pki["outsider.key"]),
        )
        with pytest.raises(redis.ConnectionError):
            stranger.ping()
        stranger.close()
