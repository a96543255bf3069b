"""Redis connections for every service that keeps something there: one place decides the transport.

What crosses to Redis is biometric or decides a crossing: the embedding cache holds templates, the
watchlist's change feed carries every enrolled template to the other replicas, and the gateway's
retry cache holds whole decisions. Every gRPC hop between services is mutual TLS when
``FACEGATE_MTLS_*`` is set, so Redis is held to the same rule:

* a ``rediss://`` URL is TLS, with the host name checked against the server's certificate. With
  ``FACEGATE_MTLS_*`` set the server is checked against that CA and this service presents its own
  certificate (a Redis started with ``tls-auth-clients yes`` refuses anyone else); unset, the
  system's CAs check the server (a managed Redis with a public certificate).
* with ``FACEGATE_MTLS_*`` set, a plaintext ``redis://`` URL to anything but loopback is refused at
  start (``ConfigError``): templates would otherwise cross the network in clear beside an encrypted
  service mesh. Loopback and ``unix://`` sockets never leave the host.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from services.runtime import mtls
from services.runtime.config import ConfigError, RuntimeSettings


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_options(url: str, runtime: RuntimeSettings, setting: str) -> dict[str, Any]:
    """redis-py connection options for ``url`` under ``runtime``'s transport rule (see the module).

    ``setting`` names the environment variable that holds ``url``, for the error message."""
    parts = urlsplit(url)
    if parts.scheme == "rediss":
        if not mtls.enabled(runtime):
            return {}
        return {
            "ssl_ca_certs": str(runtime.mtls_ca_file),
            "ssl_certfile": str(runtime.mtls_cert_file),
            "ssl_keyfile": str(runtime.mtls_key_file),
        }
    if parts.scheme == "redis" and mtls.enabled(runtime) and not _loopback(parts.hostname or ""):
        raise ConfigError(
            f"invalid configuration:\n  {setting}: plaintext redis:// to {parts.hostname} while "
            "FACEGATE_MTLS_* is set; use rediss:// (TLS with the same certificates)"
        )
    return {}
