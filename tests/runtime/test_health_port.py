"""FACEGATE_HEALTH_PORT: a plaintext port with grpc.health.v1 only, so kubelet's gRPC probes can see
warm-up and draining of a server whose main port speaks TLS."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from services.runtime.config import RuntimeSettings, load_settings
from services.runtime.server import start_server
from tests.runtime.app import ImageProbe
from tests.runtime.test_server import jpeg
from tests.support import self_signed

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_a_tls_server_reports_its_health_in_plaintext_on_the_health_port(tmp_path):
    cert, key = self_signed(tmp_path, "server")
    servicer = ImageProbe()
    servicer.server_credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    runtime = load_settings(RuntimeSettings, health_port=0)
    running = start_server(label="health-port", servicer=servicer, runtime=runtime, port=0)
    try:
        port = running.health_port
        assert port and port != running.port
        assert check(port) == NOT_SERVING  # before warm-up
        running.set_serving(True)
        assert check(port) == SERVING
        assert check(port, "facegate.v1.DetectionService") == SERVING
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:  # health and nothing else
            stub = detection_pb2_grpc.DetectionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Detect(detection_pb2.DetectRequest(image=common_pb2.Image(data=jpeg())), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as err:  # the main port still refuses plaintext
            check(running.port)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        running.health.enter_graceful_shutdown()  # what drain() does first
        assert check(port) == NOT_SERVING
    finally:
        running.drain(0)
    with pytest.raises(grpc.RpcError) as err:  # gone with the server
        check(port)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_no_health_port_unless_asked():
    running = start_server(
        label="no-health-port", servicer=ImageProbe(), runtime=load_settings(RuntimeSettings), port=0
    )
    try:
        assert running.health_port is None and running.health_server is None
    finally:
        running.drain(0)
