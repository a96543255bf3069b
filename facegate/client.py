"""Small, plain-typed helpers for talking to facegate servers."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_TIMEOUT_S = 5.0


def channel(target: str, *, max_message_bytes: int = 32 * 1024 * 1024) -> grpc.Channel:
    """An insecure channel with message limits matching the servers' defaults."""
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )


def health_check(target: str, service: str = "", timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Return the grpc.health.v1 status name ("SERVING", "NOT_SERVING", ...) or "UNREACHABLE"."""
    with channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def wait_until_serving(target: str, service: str = "", timeout: float = 120.0) -> bool:
    """Poll health until SERVING or the timeout passes; True when it is serving."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health_check(target, service, timeout=2.0) == "SERVING":
            return True
        time.sleep(0.2)
    return False
