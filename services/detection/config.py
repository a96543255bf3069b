"""Detection service settings (environment prefix FACEGATE_DETECTION_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from facegate.endpoints import DEFAULT_PORTS
from services.runtime.config import MetricsPort, Port, ServiceSettings


class DetectionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_DETECTION_", extra="ignore", frozen=True)

    port: Port = DEFAULT_PORTS["detection"][0]
    metrics_port: MetricsPort = DEFAULT_PORTS["detection"][1]
