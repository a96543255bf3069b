"""The console in front of a gateway that serves mutual TLS (the production overlay's transport):
with the CA and a client certificate it logs in and works; without them the gateway is
unreachable and log-in says so (503), never a session. Real servers, certificates from openssl."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.console.conftest import login, running_console
from tests.gateway.conftest import sibling_settings
from tests.support import free_ports, self_signed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mtls_gateway(stack, tmp_path_factory):
    """A second gateway on the stack's services that requires a client certificate."""
    from gateway.server import GatewayService
    from services.runtime.config import RuntimeSettings, load_settings
    from tests.support import serve

    d = tmp_path_factory.mktemp("console-tls")
    cert, key = self_signed(d, "gateway")
    client_cert, client_key = self_signed(d, "console")
    servicer = GatewayService(
        sibling_settings(
            stack, d / "audit.log", tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=client_cert
        ),
        load_settings(RuntimeSettings),
    )
    try:
        with serve(servicer, label="gateway-console-tls") as running:
            yield f"127.0.0.1:{running.port}", {"ca": cert, "cert": client_cert, "key": client_key}
    finally:
        servicer.close()


@pytest.fixture(scope="module")
def named_gateway(stack, tmp_path_factory):
    """A TLS gateway whose certificate names only gate.example, its public host, not 127.0.0.1."""
    from gateway.server import GatewayService
    from services.runtime.config import RuntimeSettings, load_settings
    from tests.support import serve

    d = tmp_path_factory.mktemp("console-named")
    cert, key = self_signed(d, "gateway", san="DNS:gate.example")
    servicer = GatewayService(
        sibling_settings(stack, d / "audit.log", tls_cert_file=cert, tls_key_file=key),
        load_settings(RuntimeSettings),
    )
    try:
        with serve(servicer, label="gateway-console-named") as running:
            yield f"127.0.0.1:{running.port}", cert
    finally:
        servicer.close()


def console_settings(target: str, **files: Path):
    from console.config import ConsoleSettings

    (port,) = free_ports(1)
    return ConsoleSettings(gateway_target=target, port=port, **files)


def test_the_console_reaches_a_mutual_tls_gateway_with_its_certificate(stack, mtls_gateway) -> None:
    target, pem = mtls_gateway
    files = {"gateway_ca_file": pem["ca"], "gateway_cert_file": pem["cert"], "gateway_key_file": pem["key"]}
    with (
        running_console(console_settings(target, **files)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        reply = login(client, stack.keys["officer"])
        assert reply.status_code == 200, reply.text
        assert client.get("/api/referrals").status_code == 200


@pytest.mark.parametrize("files", ["none", "ca only"])
def test_without_its_certificate_log_in_fails_and_opens_no_session(stack, mtls_gateway, files) -> None:
    target, pem = mtls_gateway
    given = {} if files == "none" else {"gateway_ca_file": pem["ca"]}
    with (
        running_console(console_settings(target, **given)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        reply = login(client, stack.keys["officer"])
        assert reply.status_code == 503 and reply.json()["error"] == "UNAVAILABLE"
        assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize("server_name", ["", "gate.example"])
def test_the_console_checks_the_name_the_gateway_certificate_holds(stack, named_gateway, server_name) -> None:
    """Dialled by address, a certificate naming the public host is refused unless the console is
    told that name (FACEGATE_CONSOLE_GATEWAY_SERVER_NAME): the check is not switched off."""
    target, cert = named_gateway
    settings = console_settings(target, gateway_ca_file=cert, gateway_server_name=server_name)
    with running_console(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        reply = login(client, stack.keys["officer"])
        assert reply.status_code == (200 if server_name else 503), reply.text


def test_tls_settings_fail_fast(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from console.app import create_app
    from console.config import ConsoleSettings

    cert, key = self_signed(tmp_path, "console")
    with pytest.raises(ValidationError, match="both GATEWAY_CERT_FILE and GATEWAY_KEY_FILE"):
        ConsoleSettings(gateway_ca_file=cert, gateway_cert_file=cert)
    with pytest.raises(ValidationError, match="needs GATEWAY_CA_FILE"):
        ConsoleSettings(gateway_cert_file=cert, gateway_key_file=key)
    with pytest.raises(ValidationError, match="GATEWAY_SERVER_NAME needs GATEWAY_CA_FILE"):
        ConsoleSettings(gateway_server_name="gate.example")
    with pytest.raises(OSError):
        create_app(ConsoleSettings(gateway_ca_file=tmp_path / "missing.pem"))
