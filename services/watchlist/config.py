"""Watchlist service settings (environment prefix FACEGATE_WATCHLIST_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from facegate.endpoints import DEFAULT_PORTS
from services.runtime.config import MetricsPort, Port, ServiceSettings


class WatchlistSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_WATCHLIST_", extra="ignore", frozen=True)

    port: Port = DEFAULT_PORTS["watchlist"][0]
    metrics_port: MetricsPort = DEFAULT_PORTS["watchlist"][1]
