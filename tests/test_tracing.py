"""OpenTelemetry traces (facegate/tracing.py): off by default; when on, one VerifyTraveller is one
connected trace gateway -> docverify -> detection/embedding and gateway -> watchlist, every span
carrying the request id. The stack is real (the session's loaded detection and embedding servicers
served again on fresh servers with tracing on, docverify, watchlist on Milvus Lite, the gateway),
and spans go to the SDK's in-memory exporter."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from facegate import tracing
from tests.support import FACES

TRAVELLER = FACES / "images/Amram_Mitzna"


# ---- off by default ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "exporter"),
    [
        ({}, None),
        ({"OTEL_TRACES_EXPORTER": "none"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, None),  # an endpoint alone: still off
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, None),
    ],
)
def test_tracing_is_off_unless_otel_variables_ask(environ, exporter) -> None:
    assert tracing.requested_exporter(environ) == exporter


def test_an_unknown_exporter_stops_the_server_with_exit_code_2() -> None:
    with pytest.raises(tracing.TracingConfigError) as caught:
        tracing.requested_exporter({"OTEL_TRACES_EXPORTER": "zipkin"})
    assert caught.value.code == 2 and "OTEL_TRACES_EXPORTER" in str(caught.value)


def test_off_means_no_interceptor_at_all() -> None:
    assert not tracing.active()
    assert tuple(tracing.server_interceptors()) == ()
    channel = grpc.insecure_channel("127.0.0.1:1")
    assert tracing.instrument_channel(channel) is channel
    channel.close()


def test_configure_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-eu-1")
    try:
        provider = tracing.configure("gateway")
        assert provider is not None and tracing.active()
        assert provider.resource.attributes["service.name"] == "gateway-eu-1"
    finally:
        tracing.reset()
    assert not tracing.active()


# ---- one VerifyTraveller, one trace -----------------------------------------------------------------


@pytest.fixture
def traced_stack(
    face_detection_server, face_embedding_server, tmp_path
) -> Iterator[tuple[str, dict, InMemorySpanExporter]]:
    """The five servers with tracing on (fresh gRPC servers; the loaded models are the session's)."""
    from facegate.thresholds import CALIBRATION_DIR
    from gateway.config import GatewaySettings
    from gateway.keys import ROLES, env_var, generate_dev_keys
    from gateway.server import GatewayService
    from services.docverify.config import DocverifySettings
    from services.docverify.server import DocVerifyService
    from services.runtime.config import RuntimeSettings, load_settings
    from services.runtime.server import start_server
    from services.watchlist.config import WatchlistSettings
    from services.watchlist.server import WatchlistService

    exporter = InMemorySpanExporter()
    tracing.configure("facegate-test", exporter=exporter)
    runtime = load_settings(RuntimeSettings)
    started = []

    def start(servicer, label: str, warm: bool = True):
        running = start_server(label=label, servicer=servicer, runtime=runtime, port=0)
        if warm:
            servicer.warmup()  # the session's detection and embedding servicers are warm already
        running.set_serving(True)
        started.append(running)
        return f"127.0.0.1:{running.port}"

    owned = []
    try:
        det = start(face_detection_server.servicer, "detection", warm=False)
        emb = start(face_embedding_server.servicer, "embedding", warm=False)
        docverify = DocVerifyService(
            load_settings(
                DocverifySettings,
                port=0,
                metrics_port=-1,
                detection_target=det,
                embedding_target=emb,
                downstream_timeout_s=60,
            ),
            runtime,
        )
        watchlist = WatchlistService(
            load_settings(
                WatchlistSettings,
                MILVUS_URI=str(tmp_path / "watchlist.db"),
                port=0,
                metrics_port=-1,
                calibration_dir=CALIBRATION_DIR,
            ),
            runtime,
        )
        owned += [docverify, watchlist]
        dv, wl = start(docverify, "docverify"), start(watchlist, "watchlist")
        plain = generate_dev_keys(tmp_path / "keys.json", tmp_path / "dev-keys.env")
        gateway = GatewayService(
            load_settings(
                GatewaySettings,
                port=0,
                metrics_port=-1,
                detection_target=det,
                embedding_target=emb,
                docverify_target=dv,
                watchlist_target=wl,
                downstream_timeout_s=60,
                request_timeout_s=120,
                key_file=tmp_path / "keys.json",
                audit_log=tmp_path / "audit.log",
                FACEGATE_GATEWAY_REDIS_URL="",
            ),
            runtime,
        )
        owned.append(gateway)
        target = start(gateway, "gateway")
        yield target, {role: plain[env_var(role)] for role in ROLES}, exporter
    finally:
        for running in reversed(started):
            running.drain(0)
        for servicer in owned:
            servicer.close()
        tracing.reset()


def _method(span) -> str:
    return span.name.rsplit("/", 1)[-1] if "/" in span.name else span.name


@pytest.mark.slow
def test_one_verify_traveller_is_one_connected_trace(traced_stack) -> None:
    import facegate
    from tests.gateway.conftest import gate_frame

    target, keys, exporter = traced_stack
    with facegate.Gateway(target, key=keys["admin"], timeout=120) as admin:
        admin.create_watchlist("wanted", kind="wanted")  # so that screening has a list to search
    exporter.clear()
    with facegate.Gateway(target, key=keys["kiosk"], timeout=120) as kiosk:
        decision = kiosk.verify_traveller(
            gate_frame(TRAVELLER / "Amram_Mitzna_0001.jpg"),
            portrait=(TRAVELLER / "Amram_Mitzna_0002.jpg").read_bytes(),
            gate_id="gate-7",
        )
    assert decision.outcome == "ACCEPT", decision
    spans = exporter.get_finished_spans()
    gateway_spans = [
        s for s in spans if s.kind == SpanKind.SERVER and s.name.endswith("GatewayService/VerifyTraveller")
    ]
    assert len(gateway_spans) == 1
    trace_id = gateway_spans[0].context.trace_id
    trace = [s for s in spans if s.context.trace_id == trace_id]

    # every span of this call is in this trace, and every span carries its request id
    rid = decision.request_id
    assert rid
    assert {s.attributes.get(tracing.REQUEST_ID_ATTRIBUTE) for s in trace} == {rid}
    strays = [
        s.name for s in spans if s.attributes.get(tracing.REQUEST_ID_ATTRIBUTE) == rid and s not in trace
    ]
    assert not strays, f"spans of the call outside its trace: {strays}"

    # connected: one root (the kiosk's client span), every other span's parent is in the trace
    ids = {s.context.span_id for s in trace}
    roots = [s for s in trace if s.parent is None]
    assert len(roots) == 1 and roots[0].kind == SpanKind.CLIENT, [(s.name, s.kind) for s in roots]
    orphans = [s.name for s in trace if s.parent is not None and s.parent.span_id not in ids]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"

    # the hops: gateway -> docverify -> detection/embedding, gateway -> watchlist
    by_id = {s.context.span_id: s for s in trace}
    children = defaultdict(set)
    for s in trace:
        if s.parent is not None and s.kind == SpanKind.SERVER:
            client = by_id[s.parent.span_id]
            caller = by_id[client.parent.span_id] if client.parent is not None else None
            children[_method(caller) if caller is not None else "kiosk"].add(s.name.split("/")[1])
    assert children["kiosk"] == {"facegate.v1.GatewayService"}
    assert {"facegate.v1.DocVerifyService", "facegate.v1.WatchlistService"} <= children["VerifyTraveller"]
    assert {"facegate.v1.DetectionService", "facegate.v1.EmbeddingService"} <= children["Verify"]
