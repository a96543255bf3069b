"""Default local endpoints: one place for the ports `make run`, the services and the SDK agree on."""

from __future__ import annotations

HOST = "127.0.0.1"

#: service label -> (gRPC port, Prometheus metrics port)
DEFAULT_PORTS: dict[str, tuple[int, int]] = {
    "gateway": (50050, 9100),
    "detection": (50051, 9101),
    "embedding": (50052, 9102),
    "watchlist": (50053, 9103),
    "docverify": (50054, 9104),
}

#: HTTP front ends -> port (the officer and admin web console; it calls the gateway, serves no gRPC)
HTTP_PORTS: dict[str, int] = {"console": 8080}

#: service label -> fully qualified proto service name
SERVICE_NAMES: dict[str, str] = {
    "gateway": "facegate.v1.GatewayService",
    "detection": "facegate.v1.DetectionService",
    "embedding": "facegate.v1.EmbeddingService",
    "watchlist": "facegate.v1.WatchlistService",
    "docverify": "facegate.v1.DocVerifyService",
}


def default_target(label: str) -> str:
    return f"{HOST}:{DEFAULT_PORTS[label][0]}"
