"""Console settings (environment prefix FACEGATE_CONSOLE_)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facegate.endpoints import DEFAULT_PORTS, HOST, HTTP_PORTS, default_target


def _metrics_links() -> dict[str, str]:
    return {
        label: f"http://{HOST}:{ports[1]}/metrics" for label, ports in DEFAULT_PORTS.items() if ports[1] > 0
    }


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_CONSOLE_", extra="ignore", frozen=True)

    host: str = Field(HOST, min_length=1, description="Interface the console's HTTP server binds.")
    port: int = Field(
        HTTP_PORTS["console"], ge=0, le=65_535, description="HTTP port of the console (0 = any free port)."
    )
    gateway_target: str = Field(
        default_target("gateway"), min_length=1, description="host:port of the gateway the console calls."
    )
    gateway_timeout_s: float = Field(
        60.0, gt=0, le=600, description="Deadline of each gateway call made for a browser request."
    )
    gateway_ca_file: Path | None = Field(
        None,
        description="PEM CA of the gateway's certificate: the console then reaches the gateway over TLS "
        "(as in the production overlay); unset = plaintext (make run, loopback).",
    )
    gateway_cert_file: Path | None = Field(
        None,
        description="PEM certificate the console presents to a gateway that requires mutual TLS "
        "(one its FACEGATE_GATEWAY_TLS_CLIENT_CA_FILE signed), with GATEWAY_KEY_FILE.",
    )
    gateway_key_file: Path | None = Field(None, description="PEM private key of GATEWAY_CERT_FILE.")
    gateway_server_name: str = Field(
        "",
        description="Name the gateway's certificate is checked against when it is not the host of "
        "GATEWAY_TARGET (e.g. the public name kiosks use, while the console dials the Service); "
        "empty = that host. Needs GATEWAY_CA_FILE.",
    )
    session_idle_s: int = Field(
        1800, ge=60, le=86_400, description="A session unused this long is logged out."
    )
    session_max_s: int = Field(
        43_200, ge=60, le=604_800, description="Longest a session lives, used or not (one shift)."
    )
    cookie_secure: bool = Field(
        False,
        description="Mark the session cookie Secure (browsers then send it over HTTPS only); set it "
        "whenever the console is served behind TLS.",
    )
    poll_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often a live referral queue asks the gateway for new referrals."
    )
    max_upload_bytes: int = Field(
        20 * 1024 * 1024,
        ge=1024,
        le=512 * 1024 * 1024,
        description="Largest request body (all its photos together); larger is refused with 413 unread.",
    )
    metrics_links: dict[str, str] = Field(
        default_factory=_metrics_links,
        description="Service name -> /metrics URL shown on the ops page (JSON object).",
    )

    @model_validator(mode="after")
    def _tls_files(self) -> ConsoleSettings:
        if (self.gateway_cert_file is None) != (self.gateway_key_file is None):
            raise ValueError("set both GATEWAY_CERT_FILE and GATEWAY_KEY_FILE, or neither")
        if self.gateway_cert_file is not None and self.gateway_ca_file is None:
            raise ValueError("GATEWAY_CERT_FILE needs GATEWAY_CA_FILE (mutual TLS is TLS first)")
        if self.gateway_server_name and self.gateway_ca_file is None:
            raise ValueError("GATEWAY_SERVER_NAME needs GATEWAY_CA_FILE (a name is checked only over TLS)")
        return self

    def gateway_tls(self) -> dict[str, Any]:
        """``Gateway(...)`` keyword arguments for the configured transport, the PEM files read once
        (OSError names an unreadable one)."""
        if self.gateway_ca_file is None:
            return {}
        out: dict[str, Any] = {
            "root_certificates": self.gateway_ca_file.read_bytes(),
            "server_name": self.gateway_server_name,
        }
        if self.gateway_cert_file is not None and self.gateway_key_file is not None:
            out["client_certificate"] = (
                self.gateway_key_file.read_bytes(),
                self.gateway_cert_file.read_bytes(),
            )
        return out
