"""Redis over TLS (services.runtime.redis_client): templates, watchlist changes and cached decisions
cross to Redis under the same mutual TLS as every gRPC hop. A real redis-server is started here with
TLS only (no plaintext port) and client certificates required, its certificate from the test CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from gateway.replay import ReplayCache
from services.embedding.cache import EmbeddingCache
from services.runtime.config import ConfigError, RuntimeSettings, load_settings
from services.runtime.redis_client import tls_options
from services.watchlist.changefeed import ChangeFeed
from tests.conftest import redis_server
from tests.runtime.conftest import runtime_for


@pytest.fixture(scope="module")
def tls_redis(pki: dict[str, Path]) -> Iterator[str]:
    """rediss:// URL of a TLS-only redis-server that requires a client certificate from the CA."""
    client = tls_options("rediss://127.0.0.1", runtime_for(pki, "docverify"), "TEST")
    server_tls = (pki["detection.pem"], pki["detection.key"], pki["ca.pem"])
    with redis_server(tls=server_tls, client_options=client) as (url, _):
        yield url


def test_each_redis_user_works_over_tls_with_the_service_certificate(pki, tls_redis) -> None:
    tls = tls_options(tls_redis, runtime_for(pki, "docverify"), "TEST")
    assert tls["ssl_certfile"] == str(pki["docverify.pem"])

    cache = EmbeddingCache(
        tls_redis, namespace="t:tls", dimension=4, ttl_s=60, timeout_s=2, retry_s=1, tls=tls
    )
    row = np.array([[0.5, 0.5, 0.5, 0.5]], np.float32)
    cache.put_many(["digest"], row)
    (got,) = cache.get_many(["digest"])
    assert got is not None and np.allclose(got, row[0])
    cache.close()

    feed = ChangeFeed(tls_redis, "t:tls:feed", timeout_s=2, max_len=100, tls=tls)
    epoch = feed.ensure_epoch()
    assert epoch and feed.ensure_epoch() == epoch
    feed.close()

    replay = ReplayCache(tls_redis, ttl_s=60, prefix="t:tls:replay", timeout_ms=2000, tls=tls)
    replay.put("kiosk-1:VerifyTraveller", "req-1", b"decision")
    assert replay.get("kiosk-1:VerifyTraveller", "req-1") == b"decision"
    replay.close()


def test_redis_refuses_a_client_without_a_certificate_from_the_ca(pki, tls_redis) -> None:
    strangers = {
        "no client certificate": {"ssl_ca_certs": str(pki["ca.pem"])},
        "a certificate the CA did not sign": {
            "ssl_ca_certs": str(pki["ca.pem"]),
            "ssl_certfile": str(pki["outsider.pem"]),
            "ssl_keyfile": str(pki["outsider.key"]),
        },
    }
    for why, options in strangers.items():
        client = redis.Redis.from_url(tls_redis, socket_timeout=2, **options)
        with pytest.raises(redis.ConnectionError):
            client.ping()
            pytest.fail(f"Redis answered a client with {why}")
        client.close()


def test_without_mtls_the_server_is_checked_against_the_system_cas(tls_redis) -> None:
    """No FACEGATE_MTLS_*: the test CA is not a system CA, so the server is not trusted."""
    plain = load_settings(RuntimeSettings)
    assert tls_options(tls_redis, plain, "TEST") == {}
    client = redis.Redis.from_url(tls_redis, socket_timeout=2)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()
    client.close()


def test_plaintext_redis_off_the_host_is_refused_beside_mtls(pki) -> None:
    mtls_on = runtime_for(pki, "docverify")
    with pytest.raises(ConfigError) as refused:
        tls_options("redis://redis:6379/0", mtls_on, "FACEGATE_GATEWAY_REDIS_URL")
    assert "FACEGATE_GATEWAY_REDIS_URL" in refused.value.message
    assert "rediss://" in refused.value.message
    for stays_on_host in (
        "redis://127.0.0.1:6379/0",
        "redis://localhost:6379/0",
        "unix:///run/redis.sock",
        "",
    ):
        assert tls_options(stays_on_host, mtls_on, "X") == {}
    assert tls_options("redis://redis:6379/0", load_settings(RuntimeSettings), "X") == {}  # no mesh: as told


def test_a_service_with_plaintext_redis_beside_mtls_stops_before_loading_its_model(pki) -> None:
    from services.embedding.config import EmbeddingSettings
    from services.embedding.server import EmbeddingService

    settings = load_settings(EmbeddingSettings, redis_url="redis://10.0.0.7:6379/0")
    with pytest.raises(ConfigError, match="FACEGATE_EMBEDDING_REDIS_URL"):
        EmbeddingService(settings, runtime_for(pki, "docverify"))
