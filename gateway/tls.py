"""The client-facing transport: TLS (optionally mutual) from files, plaintext only where it is safe.

Kiosks and officer workstations reach the gateway over a network, so plaintext is refused on any
address but loopback unless FACEGATE_GATEWAY_ALLOW_PLAINTEXT says a TLS-terminating proxy sits in
front. ``make run`` binds 127.0.0.1, so ``grpcurl -plaintext`` and the SDK work out of the box.
"""

from __future__ import annotations

import ipaddress

import grpc

from gateway.config import GatewaySettings
from services.runtime.config import ConfigError, RuntimeSettings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_transport(settings: GatewaySettings, runtime: RuntimeSettings) -> None:
    """ConfigError (exit 2) when the gateway would serve plaintext off loopback without leave."""
    if settings.tls_cert_file is None and not settings.allow_plaintext and not is_loopback(runtime.host):
        raise ConfigError(
            f"invalid configuration:\n  FACEGATE_GATEWAY_TLS_CERT_FILE: plaintext on {runtime.host} is refused; "
            "set FACEGATE_GATEWAY_TLS_CERT_FILE and FACEGATE_GATEWAY_TLS_KEY_FILE, or "
            "FACEGATE_GATEWAY_ALLOW_PLAINTEXT=true behind a TLS-terminating proxy"
        )


def server_credentials(settings: GatewaySettings) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured PEM files (client certificates required when a CA is set)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    try:
        pair = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
        client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    except OSError as exc:
        raise ConfigError(
            f"invalid configuration:\n  FACEGATE_GATEWAY_TLS_*: cannot read {exc.filename}"
        ) from None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
