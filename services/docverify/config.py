"""Docverify service settings (environment prefix FACEGATE_DOCVERIFY_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from facegate.endpoints import DEFAULT_PORTS
from services.runtime.config import MetricsPort, Port, ServiceSettings


class DocverifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_DOCVERIFY_", extra="ignore", frozen=True)

    port: Port = DEFAULT_PORTS["docverify"][0]
    metrics_port: MetricsPort = DEFAULT_PORTS["docverify"][1]
