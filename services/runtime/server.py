"""Server bootstrap shared by every service and the gateway.

One code path for: bounded concurrency and message limits, grpc.health.v1 (NOT_SERVING
until warm-up finishes and again while draining), reflection, metrics and request-id
logging through one interceptor, domain-error mapping, and SIGTERM/SIGINT drain.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from facegate import tracing
from facegate.context import MAX_REQUEST_ID, REQUEST_ID_HEADER, deadline_var, new_request_id, request_id_var
from services.runtime import metrics, mtls
from services.runtime.config import ConfigError, RuntimeSettings, ServiceSettings, load_settings
from services.runtime.errors import status_for
from services.runtime.logs import setup_logging

log = logging.getLogger("facegate.server")


class Servicer(Protocol):
    """What a service hands the runtime."""

    #: Fully qualified proto service names, e.g. "facegate.v1.DetectionService".
    service_names: Sequence[str]

    def register(self, server: grpc.Server) -> None: ...

    def warmup(self) -> None:
        """Load models, open stores; health turns SERVING only after this returns."""

    def close(self) -> None:
        """Release resources after the server has drained."""

    # Optional: ``interceptors`` (a sequence of grpc.ServerInterceptor run after the runtime's own,
    # e.g. the gateway's role check), ``server_credentials`` (grpc.ServerCredentials: serve TLS) and
    # ``internal_ports`` (more ports serving the same services with the service-to-service transport,
    # mTLS when FACEGATE_MTLS_* is set: the gateway's port for its peer replicas).


def _method_name(full: str) -> str:
    return full.rsplit("/", 1)[-1] if full else "unknown"


#: grpc.RpcMethodHandler attribute -> the factory that builds a handler of that kind.
_HANDLER_KINDS: dict[str, Callable[..., grpc.RpcMethodHandler]] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


class _CallScope:
    """What the runtime does around one RPC, whatever its kind: call context, metrics, log, errors."""

    def __init__(self, service: str, method: str, context: grpc.ServicerContext) -> None:
        self.service, self.method, self.context = service, method, context
        self.code = grpc.StatusCode.OK

    def __enter__(self) -> _CallScope:
        incoming = dict(self.context.invocation_metadata() or ())
        rid = str(incoming.get(REQUEST_ID_HEADER) or new_request_id())[:MAX_REQUEST_ID]
        remaining = self.context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None and remaining < 1e9 else None
        self._tokens = (request_id_var.set(rid), deadline_var.set(deadline))
        self.context.send_initial_metadata(((REQUEST_ID_HEADER, rid),))
        metrics.RPC_IN_FLIGHT.labels(self.service, self.method).inc()
        self.started = time.perf_counter()
        return self

    def fail(self, exc: BaseException) -> None:
        """Turn ``exc`` into the call's status (re-raising when the handler aborted itself)."""
        if isinstance(exc, NotImplementedError):
            self.code = grpc.StatusCode.UNIMPLEMENTED
            self.context.abort(self.code, f"{self.method} is not implemented yet")
        aborted = self.context.code()
        if aborted is not None and aborted != grpc.StatusCode.OK:
            self.code = aborted  # the handler called context.abort itself
            raise exc
        self.code, message = status_for(exc)
        if self.code == grpc.StatusCode.INTERNAL:
            log.error("unhandled error", exc_info=exc, extra={"method": self.method})
        self.context.abort(self.code, message)

    def __exit__(self, *_: object) -> None:
        set_code = self.context.code()
        if self.code == grpc.StatusCode.OK and set_code is not None and set_code != grpc.StatusCode.OK:
            self.code = set_code
        elapsed = time.perf_counter() - self.started
        metrics.RPC_IN_FLIGHT.labels(self.service, self.method).dec()
        metrics.RPC_LATENCY.labels(self.service, self.method).observe(elapsed)
        metrics.RPC_REQUESTS.labels(self.service, self.method, self.code.name).inc()
        log.info(
            "rpc",
            extra={"method": self.method, "code": self.code.name, "duration_ms": round(elapsed * 1000, 2)},
        )
        for var, token in zip((request_id_var, deadline_var), self._tokens, strict=True):
            with contextlib.suppress(ValueError):  # a generator finished in another context
                var.reset(token)


class _RuntimeInterceptor(grpc.ServerInterceptor):
    """Call context, metrics, logging and error mapping around every handler of every RPC kind.

    Streaming responses are wrapped so the scope closes when the stream ends, not when the
    handler returns its iterator: their metrics, logs and errors count like a unary call's.
    """

    def __init__(self, service: str) -> None:
        self.service = service

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith("/grpc."):
            return handler  # health and reflection stay out of the RPC metrics
        kind = next(k for k in _HANDLER_KINDS if getattr(handler, k) is not None)
        inner = getattr(handler, kind)
        method = _method_name(details.method)
        service = self.service

        if handler.response_streaming:

            def wrapped(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
                with _CallScope(service, method, context) as scope:
                    try:
                        yield from inner(request_or_iterator, context)
                    except Exception as exc:
                        scope.fail(exc)

        else:

            def wrapped(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
                with _CallScope(service, method, context) as scope:
                    try:
                        return inner(request_or_iterator, context)
                    except Exception as exc:
                        scope.fail(exc)

        return _HANDLER_KINDS[kind](
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass
class RunningServer:
    """A started server: its ports, health servicer and the means to stop it."""

    label: str
    server: grpc.Server
    port: int
    metrics_port: int | None
    health: health.HealthServicer
    service_names: Sequence[str]
    servicer: Servicer | None = None  # what it serves (tests restart a stopped server with it)
    runtime: RuntimeSettings | None = None
    health_server: grpc.Server | None = None  # the plaintext health-only port, when configured
    health_port: int | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            self.health.set(name, status)
        metrics.SERVICE_READY.labels(self.label).set(1 if serving else 0)

    def drain(self, grace: float) -> None:
        """Refuse new RPCs, let in-flight ones finish for up to ``grace`` seconds, then stop."""
        self.health.enter_graceful_shutdown()
        metrics.SERVICE_READY.labels(self.label).set(0)
        self.server.stop(grace).wait()
        if self.health_server is not None:  # probes see NOT_SERVING until the very end
            self.health_server.stop(0).wait()
        self._stopped.set()


def start_server(
    *,
    label: str,
    servicer: Servicer,
    runtime: RuntimeSettings,
    port: int,
    metrics_port: int = -1,
) -> RunningServer:
    """Build and start a gRPC server (health NOT_SERVING); the caller warms up, then sets SERVING."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=runtime.max_workers, thread_name_prefix=f"{label}-rpc"),
        # The runtime's interceptor runs first, so a call refused by a servicer's own interceptor
        # (the gateway's role check) is still counted, logged and mapped like any other.
        interceptors=[
            _RuntimeInterceptor(label),
            *tracing.server_interceptors(),
            *getattr(servicer, "interceptors", ()),
        ],
        maximum_concurrent_rpcs=runtime.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", runtime.max_message_bytes),
            ("grpc.max_send_message_length", runtime.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    servicer.register(server)
    names = list(servicer.service_names)
    reflection.enable_server_reflection((*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    credentials = getattr(servicer, "server_credentials", None) or mtls.server_credentials(runtime)
    address = f"{runtime.host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise RuntimeError(f"could not bind {runtime.host}:{port}")
    _bind_internal_ports(server, runtime, getattr(servicer, "internal_ports", ()))
    bound_metrics = None
    if metrics_port >= 0:
        bound_metrics = metrics.start_metrics_server(runtime.host, metrics_port)
    server.start()
    health_server, health_port = _start_health_server(label, runtime, health_servicer)
    running = RunningServer(
        label,
        server,
        bound,
        bound_metrics,
        health_servicer,
        names,
        servicer,
        runtime,
        health_server,
        health_port,
    )
    running.set_serving(False)
    return running


def _bind_internal_ports(server: grpc.Server, runtime: RuntimeSettings, ports: Sequence[int]) -> None:
    """Bind each of ``ports`` (fixed numbers) with the transport every internal hop uses."""
    credentials = mtls.server_credentials(runtime)
    for extra in ports:
        address = f"{runtime.host}:{extra}"
        bound = (
            server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        )
        if bound == 0:
            raise RuntimeError(f"could not bind the internal port {address}")


def _start_health_server(
    label: str, runtime: RuntimeSettings, health_servicer: health.HealthServicer
) -> tuple[grpc.Server | None, int | None]:
    """The plaintext health-only port (FACEGATE_HEALTH_PORT), sharing the main port's health status.

    Kubelet gRPC probes speak plaintext, so a server whose main port speaks TLS (the gateway to
    its clients, every service under mutual TLS) could otherwise only be probed by TCP, which
    says nothing of warm-up or draining. This port serves grpc.health.v1 and nothing else.
    """
    if runtime.health_port < 0:
        return None, None
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"{label}-health"))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(f"{runtime.host}:{runtime.health_port}")
    if port == 0:
        raise RuntimeError(f"could not bind the health port {runtime.host}:{runtime.health_port}")
    server.start()
    return server, port


def run_service(
    label: str,
    settings_cls: type[ServiceSettings],
    build: Callable[[Any, RuntimeSettings], Servicer],
) -> None:
    """Process entry point: config, logging, start, warm up, SERVING, wait for a signal, drain."""
    try:
        runtime = load_settings(RuntimeSettings)
        settings = load_settings(settings_cls)
        tracing.configure(label)  # OTEL_* variables; off unless OTEL_TRACES_EXPORTER names an exporter
    except (ConfigError, tracing.TracingConfigError) as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        raise
    setup_logging(label, runtime.log_level)
    try:
        servicer = build(settings, runtime)
    except ConfigError as exc:  # a setting that only the service itself can check (files, TLS)
        print(f"{label}: {exc}", file=sys.stderr)
        raise
    running = start_server(
        label=label,
        servicer=servicer,
        runtime=runtime,
        port=settings.port,
        metrics_port=settings.metrics_port,
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal received; draining", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    log.info(
        "listening",
        extra={
            "grpc_port": running.port,
            "metrics_port": running.metrics_port,
            "health_port": running.health_port,
            "host": runtime.host,
        },
    )
    started = time.perf_counter()
    try:
        servicer.warmup()
    except Exception as exc:
        log.error("warm-up failed; exiting", exc_info=exc)
        running.drain(0)
        raise SystemExit(1) from None
    if not stop.is_set():
        running.set_serving(True)
        log.info("serving", extra={"warmup_s": round(time.perf_counter() - started, 2)})
    stop.wait()
    running.drain(runtime.grace_seconds)
    servicer.close()
    log.info("stopped")
