"""RPC metrics every server exports, recorded by the server interceptor (never by hand).

Service-specific metrics live in each service's own ``metrics.py``. Labels carry method
names and status codes only: never images, names or ids.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

RPC_REQUESTS = Counter(
    "facegate_rpc_requests_total",
    "RPCs handled, by service, method and gRPC status code.",
    ["service", "method", "code"],
)
RPC_LATENCY = Histogram(
    "facegate_rpc_latency_seconds",
    "RPC handling time in seconds, by service and method.",
    ["service", "method"],
    buckets=LATENCY_BUCKETS,
)
RPC_IN_FLIGHT = Gauge(
    "facegate_rpc_in_flight",
    "RPCs being handled right now, by service and method.",
    ["service", "method"],
)
SERVICE_READY = Gauge(
    "facegate_service_ready",
    "1 when the service reports SERVING on grpc.health.v1, else 0.",
    ["service"],
)


def start_metrics_server(host: str, port: int) -> int:
    """Serve /metrics over HTTP; returns the bound port (port 0 picks a free one)."""
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return int(server.server_address[1])
