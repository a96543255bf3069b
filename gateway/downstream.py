"""The services as the gateway sees them: the face pipeline, docverify and watchlist over budgeted
channels, and the one mapping of their failures.

Every channel comes from the client layer, so each call carries the request id and a deadline
no longer than the caller's remaining time (capped at ``downstream_timeout_s``), and idempotent
reads are retried on UNAVAILABLE with jittered backoff. Writes are never retried here: admin
writes carry their own idempotency keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc

from facegate.client import open_channel
from facegate.errors import INPUT_CODES, FacegateError, ServiceFailure, from_rpc_error, rpc_code, rpc_details
from facegate.pipeline import FacePipeline
from facegate.v1 import docverify_pb2_grpc, watchlist_pb2_grpc
from gateway import metrics
from gateway.config import GatewaySettings

T = TypeVar("T")

#: Codes a downstream service answers about the request itself: passed to the caller as they are.
PASS_THROUGH = INPUT_CODES | {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}


def downstream_error(exc: grpc.RpcError, service: str) -> FacegateError:
    """A failed call as a gateway error: the caller's own mistakes keep their code, all else fails closed."""
    code = rpc_code(exc)
    metrics.DOWNSTREAM_ERRORS.labels(service, code.name).inc()
    if code in PASS_THROUGH:
        return from_rpc_error(exc)
    error = ServiceFailure(f"{service} service: {code.name}: {rpc_details(exc)[:200]}", code)
    error.service = service
    return error


class Downstream:
    """Channels and stubs for every service the gateway calls; thread-safe."""

    def __init__(self, settings: GatewaySettings, credentials: grpc.ChannelCredentials | None = None) -> None:
        """``credentials``: TLS for the service-to-service hop (services.runtime.mtls), or None."""
        budget = settings.downstream_timeout_s
        self.pipeline = FacePipeline.connect(
            settings.detection_target, settings.embedding_target, budget_s=budget, credentials=credentials
        )
        self._channels = [
            open_channel(settings.docverify_target, budget_s=budget, credentials=credentials),
            open_channel(settings.watchlist_target, budget_s=budget, credentials=credentials),
        ]
        self.docverify = docverify_pb2_grpc.DocVerifyServiceStub(self._channels[0])
        self.watchlist = watchlist_pb2_grpc.WatchlistServiceStub(self._channels[1])

    def close(self) -> None:
        self.pipeline.close()
        for ch in self._channels:
            ch.close()

    def call(self, service: str, method: Callable[[Any], T], request: Any) -> T:
        """``method(request)``, its failure mapped by :func:`downstream_error`."""
        try:
            return method(request)
        except grpc.RpcError as exc:
            raise downstream_error(exc, service) from None

    def count_failure(self, error: FacegateError) -> None:
        """Count a pipeline failure (the pipeline maps its own errors) in the downstream metric."""
        code = error.upstream_code if isinstance(error, ServiceFailure) else error.code
        metrics.DOWNSTREAM_ERRORS.labels(error.service or "unknown", code.name).inc()


class Timings:
    """Per-stage wall time of one call: kept for the decision and observed in the stage metric."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.ms[name] = round(self.ms.get(name, 0.0) + elapsed * 1000, 2)
            metrics.STAGE_SECONDS.labels(name).observe(elapsed)
