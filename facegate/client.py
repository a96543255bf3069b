"""Channels to facegate servers: one factory, one client interceptor, retries for idempotent reads.

Every outgoing call made through :func:`open_channel` carries

* the request id of the call being served (or set by :func:`facegate.context.call_context`) in
  ``x-request-id``, so one id follows a request through every service it touches;
* a deadline that is the smallest of the call's own timeout, the channel's per-call budget and
  the time the caller has left (``facegate.context.remaining_s``): a downstream call never
  outlives the request waiting for it;
* any channel-wide metadata, e.g. the gateway's ``authorization: Bearer <key>``.

Idempotent reads (see :data:`IDEMPOTENT_READS`) are retried by gRPC itself on UNAVAILABLE with
jittered exponential backoff; nothing else is retried.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facegate import tracing
from facegate.context import REQUEST_ID_HEADER, current_request_id, remaining_s

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
#: A deadline already spent still gets this much, so the call fails with DEADLINE_EXCEEDED at once.
_SPENT_S = 0.001
#: Reconnect quickly to a restarted service (gRPC's defaults back off up to 2 minutes): a gate
#: that refers travellers because a channel is still backing off is a queue at the border.
RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

#: Per proto service, the methods that only read (or compute) and may be sent again safely.
IDEMPOTENT_READS: dict[str, tuple[str, ...]] = {
    "facegate.v1.DetectionService": ("Detect", "DetectBatch"),
    "facegate.v1.EmbeddingService": ("Embed", "GetModelInfo"),
    "facegate.v1.WatchlistService": ("Search", "GetSubject", "ListSubjects", "ListWatchlists", "Stats"),
    "facegate.v1.DocVerifyService": ("Verify", "ParseMrz", "ExtractPortrait"),
}

#: Retry policy for the idempotent reads (gRPC adds jitter to every backoff).
RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


def effective_timeout(own: float | None, budget: float | None) -> float | None:
    """The smallest of a call's own timeout, its channel's budget and the caller's remaining time."""
    candidates = [t for t in (own, budget, remaining_s()) if t is not None]
    if not candidates:
        return None
    return max(min(candidates), _SPENT_S)


class CallContextInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the request id, channel metadata and the derived deadline to every call kind."""

    def __init__(self, budget_s: float | None = None, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.budget_s = budget_s
        self.metadata = tuple(metadata)

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = list(details.metadata or ())
        present = {key for key, _ in metadata}
        rid = current_request_id()
        if rid and REQUEST_ID_HEADER not in present:
            metadata.append((REQUEST_ID_HEADER, rid))
        metadata.extend(item for item in self.metadata if item[0] not in present)
        return _CallDetails(
            details.method,
            effective_timeout(details.timeout, self.budget_s),
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(
        self, continuation: Any, details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(
        self, continuation: Any, details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        return continuation(self._details(details), requests)


def service_config(services: Sequence[str] = tuple(IDEMPOTENT_READS)) -> str:
    """gRPC service config JSON that retries the idempotent reads of ``services``."""
    names = [{"service": s, "method": m} for s in services for m in IDEMPOTENT_READS.get(s, ())]
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": RETRY_POLICY}]})


def open_channel(
    target: str,
    *,
    budget_s: float | None = None,
    metadata: Sequence[tuple[str, str]] = (),
    credentials: grpc.ChannelCredentials | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    retry_reads: bool = True,
    extra_options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A channel whose every call carries the request id, metadata and the derived deadline.

    ``budget_s`` caps each call made on it (None: only the call's own timeout and the caller's
    remaining time apply). ``credentials`` makes it a TLS channel; plaintext otherwise.
    ``extra_options`` are more gRPC channel arguments (e.g. the TLS name override for peers
    dialled by address).
    """
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.enable_retries", 1 if retry_reads else 0),
        *RECONNECT_OPTIONS,
        *extra_options,
    ]
    if retry_reads:
        options.append(("grpc.service_config", service_config()))
    if credentials is not None:
        raw = grpc.secure_channel(target, credentials, options=options)
    else:
        raw = grpc.insecure_channel(target, options=options)
    return tracing.instrument_channel(grpc.intercept_channel(raw, CallContextInterceptor(budget_s, metadata)))


def channel(target: str, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> grpc.Channel:
    """A plaintext channel with the standard interceptor (shorthand used by tests and tools)."""
    return open_channel(target, max_message_bytes=max_message_bytes)


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
