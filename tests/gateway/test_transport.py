"""The gateway's client-facing transport: TLS and mutual TLS from PEM files, plaintext refused off
loopback. Certificates are made by openssl for 127.0.0.1 in each run."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegate.errors import Unavailable
from facegate.gateway_client import Gateway
from services.runtime.config import ConfigError, RuntimeSettings, load_settings
from tests.support import self_signed


def settings(stack, tmp_path: Path, **overrides: object):
    from gateway.config import GatewaySettings

    return load_settings(
        GatewaySettings,
        port=0,
        metrics_port=-1,
        watchlist_target=stack.servicer.settings.watchlist_target,
        key_file=stack.servicer.settings.key_file,
        audit_log=tmp_path / "audit.log",
        FACEGATE_GATEWAY_REDIS_URL="",
        **overrides,
    )


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_tls_serves_the_gateway_and_refuses_plaintext(stack, tmp_path: Path, mutual: bool) -> None:
    from gateway.server import GatewayService
    from tests.support import serve

    cert, key = self_signed(tmp_path, "gateway")
    client_cert, client_key = self_signed(tmp_path, "officer-ws")
    extra = {"tls_client_ca_file": client_cert} if mutual else {}
    servicer = GatewayService(
        settings(stack, tmp_path, tls_cert_file=cert, tls_key_file=key, **extra),
        load_settings(RuntimeSettings),
    )
    admin = stack.keys["admin"]
    try:
        with serve(servicer, label="gateway-tls") as running:
            target = f"127.0.0.1:{running.port}"
            pair = (client_key.read_bytes(), client_cert.read_bytes())
            with Gateway(
                target, key=admin, root_certificates=cert.read_bytes(), client_certificate=pair
            ) as gw:
                assert isinstance(gw.list_watchlists(), list)
            with pytest.raises(Unavailable), Gateway(target, key=admin, timeout=5) as plain:
                plain.list_watchlists()
            if mutual:  # no client certificate: the handshake fails before any RPC
                with (
                    pytest.raises(Unavailable),
                    Gateway(target, key=admin, root_certificates=cert.read_bytes(), timeout=5) as anon,
                ):
                    anon.list_watchlists()
    finally:
        servicer.close()


def test_plaintext_is_refused_off_loopback_unless_allowed(stack, tmp_path: Path) -> None:
    from gateway.tls import check_transport, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.7") and not is_loopback("gateway.local")
    exposed = load_settings(RuntimeSettings, host="0.0.0.0")
    with pytest.raises(ConfigError) as err:
        check_transport(settings(stack, tmp_path), exposed)
    assert "FACEGATE_GATEWAY_TLS_CERT_FILE" in str(err.value) and err.value.code == 2
    check_transport(settings(stack, tmp_path, allow_plaintext=True), exposed)
    cert, key = self_signed(tmp_path, "gateway")
    check_transport(settings(stack, tmp_path, tls_cert_file=cert, tls_key_file=key), exposed)
    check_transport(settings(stack, tmp_path), load_settings(RuntimeSettings))  # loopback: fine


def test_half_a_tls_pair_is_a_configuration_error(tmp_path: Path) -> None:
    from gateway.config import GatewaySettings

    with pytest.raises(ConfigError) as err:
        load_settings(GatewaySettings, tls_cert_file=tmp_path / "cert.pem")
    assert "TLS_CERT_FILE and TLS_KEY_FILE" in str(err.value)
