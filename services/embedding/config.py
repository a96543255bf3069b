"""Embedding service settings (environment prefix FACEGATE_EMBEDDING_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from facegate.endpoints import DEFAULT_PORTS
from services.runtime.config import MetricsPort, Port, ServiceSettings


class EmbeddingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_EMBEDDING_", extra="ignore", frozen=True)

    port: Port = DEFAULT_PORTS["embedding"][0]
    metrics_port: MetricsPort = DEFAULT_PORTS["embedding"][1]
