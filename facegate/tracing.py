"""OpenTelemetry traces across the services: off unless the standard ``OTEL_*`` variables ask.

One VerifyTraveller is one trace: the gateway's server span, its client spans to docverify and the
watchlist, docverify's server span and its client spans to detection and embedding, and theirs. The
W3C ``traceparent`` travels in the gRPC metadata (the OpenTelemetry gRPC instrumentation's client
and server interceptors), and every span carries the call's request id as ``facegate.request_id``
(the same id as the logs and the decision), so a trace and a log line find each other.

Switched on per process, at start (``services.runtime.server.run_service`` calls :func:`configure`):

* ``OTEL_TRACES_EXPORTER=otlp`` (or ``console``): tracing on. Unset or ``none``: off, and no
  interceptor is installed at all (nothing is added to a call). ``OTEL_SDK_DISABLED=true``: off.
* the exporter reads the standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), ``_HEADERS``, ``_TIMEOUT``, ``_INSECURE``, …;
  ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` name the process (default service name:
  the server's label), ``OTEL_TRACES_SAMPLER``/``_ARG`` sample (default: parent-based, always on).

This differs from the SDK's own default (which exports OTLP when nothing is set) on purpose: a gate
machine without a collector must not spend time on exports that fail.

The provider is this module's, not the global one, so a test can switch tracing on for the servers
it starts (:func:`configure` with an in-memory exporter) and off again (:func:`reset`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from opentelemetry.context import Context
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from facegate.context import current_request_id

#: The span attribute that carries the request id (x-request-id).
REQUEST_ID_ATTRIBUTE = "facegate.request_id"
#: OTEL_TRACES_EXPORTER values this module builds an exporter for.
EXPORTERS = ("otlp", "console")

_lock = threading.Lock()
_provider: TracerProvider | None = None


class TracingConfigError(SystemExit):
    """An OTEL_* value this module cannot honour: the server stops at start (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


class RequestIdProcessor(SpanProcessor):
    """Puts the request id of the call being served (or made) on every span when it starts."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        rid = current_request_id()
        if rid:
            span.set_attribute(REQUEST_ID_ATTRIBUTE, rid)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def requested_exporter(environ: Mapping[str, str] = os.environ) -> str | None:
    """The exporter the environment asks for (``otlp``, ``console``), or None: tracing off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names:
        return None
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"invalid configuration: OTEL_TRACES_EXPORTER: unsupported exporter {unknown[0]!r} (use otlp, console or none)"
        )
    return names[0]


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, TLS and timeout from OTEL_EXPORTER_OTLP_*


def configure(service_name: str, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Switch tracing on for this process when ``exporter`` is given (tests: an in-memory one, spans
    exported as they end) or the environment asks for one; returns the provider, or None (off)."""
    global _provider
    if exporter is None:
        name = requested_exporter()
        if name is None:
            return None
        processor: SpanProcessor = BatchSpanProcessor(_exporter(name))
    else:
        processor = SimpleSpanProcessor(exporter)
    resource = Resource.create({"service.name": service_name}).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(RequestIdProcessor())
    provider.add_span_processor(processor)
    with _lock:
        old, _provider = _provider, provider
    if old is not None:
        old.shutdown()
    return provider


def reset() -> None:
    """Tracing off again: servers and channels created from now on get no interceptors."""
    global _provider
    with _lock:
        old, _provider = _provider, None
    if old is not None:
        old.shutdown()


def active() -> bool:
    return _provider is not None


def server_interceptors() -> Sequence[grpc.ServerInterceptor]:
    """The server-span interceptor when tracing is on (after the runtime's, so the request id is set)."""
    provider = _provider
    if provider is None:
        return ()
    from opentelemetry.instrumentation.grpc import server_interceptor

    return (server_interceptor(tracer_provider=provider),)


def instrument_channel(channel: Any) -> Any:
    """``channel`` with client spans and trace-context propagation when tracing is on, else itself."""
    provider = _provider
    if provider is None:
        return channel
    from opentelemetry.instrumentation.grpc import client_interceptor
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    return intercept_channel(channel, client_interceptor(tracer_provider=provider))
