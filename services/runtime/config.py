"""Configuration from environment variables, validated once at start-up.

A wrong value stops the process with a message naming the variable (fail fast), rather
than surfacing later as a confusing runtime error at a gate. Every variable is listed in
the README's configuration table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

_SECRET_HINTS = ("token", "password", "secret", "key")

#: A TCP port for gRPC (0 = let the OS pick, handy in tests).
Port = Annotated[int, Field(ge=0, le=65535, description="gRPC port (0 = any free port).")]
#: The Prometheus port (0 = let the OS pick, -1 = no metrics endpoint).
MetricsPort = Annotated[
    int, Field(ge=-1, le=65535, description="Prometheus /metrics port (0 = any free port, -1 = off).")
]


class ConfigError(SystemExit):
    """Raised (as a SystemExit with code 2) when the environment holds an invalid value."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


class RuntimeSettings(BaseSettings):
    """Settings every server shares (one value for all services of a deployment)."""

    model_config = SettingsConfigDict(env_prefix="FACEGATE_", extra="ignore", frozen=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level of the JSON log lines written to stderr."
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Interface the gRPC and metrics servers bind (0.0.0.0 in containers).",
    )
    max_workers: int = Field(16, ge=1, le=1024, description="gRPC handler threads per server.")
    max_concurrent_rpcs: int = Field(
        64, ge=1, le=100_000, description="In-flight RPCs above this are refused with RESOURCE_EXHAUSTED."
    )
    max_message_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, le=512 * 1024 * 1024, description="gRPC receive/send message limit."
    )
    grace_seconds: float = Field(10.0, ge=0, le=600, description="SIGTERM drain time for in-flight RPCs.")
    health_port: int = Field(
        -1,
        ge=-1,
        le=65535,
        description="A second, plaintext port that serves only grpc.health.v1 (the same status as the main "
        "port), for kubelet gRPC probes when the main port speaks TLS (-1 = off, 0 = any free port).",
    )
    image_max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest encoded image accepted.")
    image_max_pixels: int = Field(
        40_000_000,
        ge=1,
        description="Largest decoded image (width*height) accepted; guards decompression bombs.",
    )
    mtls_cert_file: Path | None = Field(
        None,
        description="PEM certificate of this service for the service-to-service hop; with _KEY_FILE and "
        "_CA_FILE every server requires client certificates signed by that CA and every downstream call "
        "presents this one (mutual TLS), as does every rediss:// Redis URL (a plaintext redis:// URL to "
        "another host is then refused at start). Unset: plaintext (loopback or a protected network only).",
    )
    mtls_key_file: Path | None = Field(None, description="PEM private key for FACEGATE_MTLS_CERT_FILE.")
    mtls_ca_file: Path | None = Field(
        None, description="PEM CA bundle that signed every facegate service's certificate."
    )

    @model_validator(mode="after")
    def _mtls_all_or_none(self) -> RuntimeSettings:
        given = [f is not None for f in (self.mtls_cert_file, self.mtls_key_file, self.mtls_ca_file)]
        if any(given) and not all(given):
            raise ValueError("set all of MTLS_CERT_FILE, MTLS_KEY_FILE and MTLS_CA_FILE, or none")
        return self


class ServiceSettings(BaseSettings):
    """Base for one service's settings; subclasses set ``env_prefix`` (e.g. FACEGATE_DETECTION_)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    port: Port
    metrics_port: MetricsPort


S = TypeVar("S", bound=BaseSettings)


def _is_secret(name: str) -> bool:
    return any(hint in name.lower() for hint in _SECRET_HINTS)


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment (plus explicit overrides) or raise ConfigError.

    The error names each offending environment variable, what is wrong with it and, unless
    it looks like a secret, the value that was given.
    """
    try:
        return cls(**overrides)
    except SettingsError as exc:  # a value pydantic-settings could not even parse (e.g. bad JSON)
        prefix = cls.model_config.get("env_prefix", "") or ""
        found = re.search(r'field "(\w+)"', str(exc))
        var = f"{prefix}{found.group(1)}".upper() if found else "?"
        raise ConfigError(f"invalid configuration:\n  {var}: not a valid JSON value") from None
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "") or ""
        problems = []
        for err in exc.errors():
            field = "_".join(str(part) for part in err["loc"]) or "?"
            var = f"{prefix}{field}".upper()
            given = err.get("input")
            shown = "" if _is_secret(var) or isinstance(given, dict) else f" (got {given!r})"
            problems.append(f"  {var}: {err['msg']}{shown}")
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None
