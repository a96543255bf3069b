"""Mutual TLS for the service-to-service hop, from the FACEGATE_MTLS_* files every service shares.

With them set, every server accepts only callers presenting a certificate signed by the shared CA,
and every downstream channel a service opens (docverify → detection/embedding, gateway → all)
presents the service's own certificate and checks the callee's against the same CA. The
certificates must name the addresses callers use (e.g. the Kubernetes service DNS names) in their
subjectAltName. Unset: plaintext, for loopback (`make run`) or a network protected otherwise.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from services.runtime.config import ConfigError, RuntimeSettings


def _read(path: Path | None) -> bytes:
    assert path is not None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"invalid configuration:\n  FACEGATE_MTLS_*: cannot read {exc.filename}") from None


def enabled(runtime: RuntimeSettings) -> bool:
    return runtime.mtls_cert_file is not None


def server_credentials(runtime: RuntimeSettings) -> grpc.ServerCredentials | None:
    """Credentials that require a client certificate from the shared CA; None when mTLS is off."""
    if not enabled(runtime):
        return None
    pair = (_read(runtime.mtls_key_file), _read(runtime.mtls_cert_file))
    return grpc.ssl_server_credentials(
        [pair], root_certificates=_read(runtime.mtls_ca_file), require_client_auth=True
    )


def channel_credentials(runtime: RuntimeSettings) -> grpc.ChannelCredentials | None:
    """Credentials for a downstream channel (this service's certificate); None when mTLS is off."""
    if not enabled(runtime):
        return None
    return grpc.ssl_channel_credentials(
        _read(runtime.mtls_ca_file), _read(runtime.mtls_key_file), _read(runtime.mtls_cert_file)
    )
