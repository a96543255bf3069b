"""The shared runtime on real gRPC servers (loopback): health, reflection, metrics, limits,
error mapping, request ids, SIGTERM drain and fail-fast configuration."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from PIL import Image

from facegate.client import health_check
from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from services.runtime.config import RuntimeSettings
from services.runtime.server import start_server
from tests.runtime.app import ImageProbe
from tests.support import REPO, connect, serve


def jpeg(w: int = 32, h: int = 24) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(out, format="JPEG")
    return out.getvalue()


def detect(ch: grpc.Channel, data: bytes, **options: int) -> detection_pb2.DetectResponse:
    stub = detection_pb2_grpc.DetectionServiceStub(ch)
    request = detection_pb2.DetectRequest(
        image=common_pb2.Image(data=data), options=detection_pb2.DetectionOptions(**options)
    )
    return stub.Detect(request, timeout=10)


@pytest.fixture(scope="module")
def probe():
    servicer = ImageProbe(runtime=RuntimeSettings(image_max_pixels=1_000_000))
    with serve(servicer, label="probe", max_message_bytes=256 * 1024) as running:
        yield running


def test_health_reports_serving_for_server_and_service(probe) -> None:
    target = f"127.0.0.1:{probe.port}"
    assert health_check(target) == "SERVING"
    assert health_check(target, "facegate.v1.DetectionService") == "SERVING"
    assert health_check(target, "facegate.v1.NoSuchService") == "SERVICE_UNKNOWN"


def test_health_is_not_serving_until_ready_and_while_draining() -> None:
    servicer = ImageProbe()
    running = start_server(label="probe2", servicer=servicer, runtime=RuntimeSettings(), port=0)
    target = f"127.0.0.1:{running.port}"
    try:
        assert health_check(target) == "NOT_SERVING"
        running.set_serving(True)
        assert health_check(target) == "SERVING"
        running.set_serving(False)
        assert health_check(target, "facegate.v1.DetectionService") == "NOT_SERVING"
    finally:
        running.drain(0)
    assert health_check(target, timeout=1) == "UNREACHABLE"


def test_reflection_lists_the_service(probe) -> None:
    with connect(probe) as ch:
        services = ProtoReflectionDescriptorDatabase(ch).get_services()
    assert "facegate.v1.DetectionService" in services
    assert "grpc.health.v1.Health" in services


def test_metrics_endpoint_counts_rpcs_by_method_and_code(probe) -> None:
    with connect(probe) as ch:
        detect(ch, jpeg())
        with pytest.raises(grpc.RpcError):
            detect(ch, b"")
    body = urllib.request.urlopen(f"http://127.0.0.1:{probe.metrics_port}/metrics", timeout=5).read().decode()
    assert 'facegate_rpc_requests_total{code="OK",method="Detect",service="probe"}' in body
    assert 'facegate_rpc_requests_total{code="INVALID_ARGUMENT",method="Detect",service="probe"}' in body
    assert 'facegate_rpc_latency_seconds_count{method="Detect",service="probe"}' in body
    assert 'facegate_rpc_in_flight{method="Detect",service="probe"} 0.0' in body
    assert 'facegate_service_ready{service="probe"} 1.0' in body


def test_request_id_is_echoed_or_generated(probe) -> None:
    with connect(probe) as ch:
        stub = detection_pb2_grpc.DetectionServiceStub(ch)
        request = detection_pb2.DetectRequest(image=common_pb2.Image(data=jpeg()))
        _, call = stub.Detect.with_call(request, metadata=(("x-request-id", "gate-7-abc"),), timeout=5)
        assert dict(call.initial_metadata())["x-request-id"] == "gate-7-abc"
        _, call = stub.Detect.with_call(request, timeout=5)
        assert len(dict(call.initial_metadata())["x-request-id"]) == 32


BAD_IMAGES = {
    "empty": (b"", grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    "non-image": (b"hello, this is text", grpc.StatusCode.INVALID_ARGUMENT, "unsupported or unrecognised"),
    "truncated": (jpeg(200, 200)[:300], grpc.StatusCode.INVALID_ARGUMENT, "truncated"),
    "corrupt": (
        b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8,
        grpc.StatusCode.INVALID_ARGUMENT,
        "cannot be decoded",
    ),
    "too many pixels": (jpeg(1200, 1000), grpc.StatusCode.RESOURCE_EXHAUSTED, "1200x1000"),
}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_bad_images_get_precise_status_and_server_stays_up(probe, kind: str) -> None:
    data, code, words = BAD_IMAGES[kind]
    with connect(probe) as ch:
        with pytest.raises(grpc.RpcError) as err:
            detect(ch, data)
        assert err.value.code() == code
        assert words in err.value.details()
        reply = detect(ch, jpeg(40, 30))  # the next good request is served
    assert (reply.image_width, reply.image_height) == (40, 30)


def test_oversized_message_is_refused_with_resource_exhausted(probe) -> None:
    with connect(probe) as ch:
        with pytest.raises(grpc.RpcError) as err:
            detect(ch, b"\xff\xd8\xff" + b"\x00" * (300 * 1024))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert detect(ch, jpeg()).image_width == 32


@pytest.mark.parametrize(
    "selector,code,message",
    [
        (1, grpc.StatusCode.INVALID_ARGUMENT, "bad field"),
        (2, grpc.StatusCode.FAILED_PRECONDITION, "model version mismatch"),
        (3, grpc.StatusCode.UNAVAILABLE, "downstream down"),
        (4, grpc.StatusCode.INTERNAL, "internal error"),  # no internal detail leaks
    ],
)
def test_domain_errors_map_to_status_codes(probe, selector: int, code, message: str) -> None:
    with connect(probe) as ch, pytest.raises(grpc.RpcError) as err:
        detect(ch, jpeg(), min_face_size=selector)
    assert err.value.code() == code
    assert err.value.details() == message


def test_unimplemented_method_says_so(probe) -> None:
    with connect(probe) as ch, pytest.raises(grpc.RpcError) as err:
        detection_pb2_grpc.DetectionServiceStub(ch).DetectBatch(detection_pb2.DetectBatchRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_concurrency_limit_refuses_extra_calls() -> None:
    with serve(ImageProbe(), label="narrow", max_concurrent_rpcs=1) as running, connect(running) as ch:
        slow = threading.Thread(target=detect, args=(ch, jpeg()), kwargs={"max_faces": 10})
        slow.start()
        time.sleep(0.3)
        with pytest.raises(grpc.RpcError) as err:
            detect(ch, jpeg())
        slow.join()
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert detect(ch, jpeg()).image_width == 32


# --- the runtime as a process: run_service, signals, configuration -------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(**env: str) -> subprocess.Popen:
    full = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.runtime.app"], env=full, cwd=REPO, stderr=subprocess.PIPE, text=True
    )


def test_sigterm_drains_in_flight_calls_then_exits() -> None:
    port = free_port()
    proc = start_app(
        FACEGATE_TESTAPP_PORT=str(port), FACEGATE_GRACE_SECONDS="10", FACEGATE_TESTAPP_WARMUP_SECONDS="0.5"
    )
    target = f"127.0.0.1:{port}"
    try:
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not seen or seen[-1] != "SERVING"):
            status = health_check(target, timeout=1)
            if not seen or seen[-1] != status:
                seen.append(status)
            time.sleep(0.05)
        assert "NOT_SERVING" in seen and seen[-1] == "SERVING"  # not serving during warm-up

        results: dict[str, object] = {}

        def slow_call() -> None:
            with grpc.insecure_channel(target) as ch:
                try:
                    results["reply"] = detect(ch, jpeg(), max_faces=20)  # 2 s in flight
                except grpc.RpcError as exc:
                    results["error"] = exc.code()

        worker = threading.Thread(target=slow_call)
        worker.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with grpc.insecure_channel(target) as ch, pytest.raises(grpc.RpcError) as refused:
            detect(ch, jpeg())
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # no new calls while draining
        worker.join(timeout=15)
        assert "error" not in results, results
        assert results["reply"].image_width == 32  # the in-flight call finished
        assert proc.wait(timeout=15) == 0
        logs = proc.stderr.read()
        assert '"msg": "signal received; draining"' in logs and '"signal": "SIGTERM"' in logs
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(
    "env,variable",
    [
        ({"FACEGATE_MAX_WORKERS": "zero"}, "FACEGATE_MAX_WORKERS"),
        ({"FACEGATE_TESTAPP_PORT": "70000"}, "FACEGATE_TESTAPP_PORT"),
        ({"FACEGATE_LOG_LEVEL": "LOUD"}, "FACEGATE_LOG_LEVEL"),
    ],
)
def test_bad_config_value_stops_start_up_naming_the_variable(env: dict[str, str], variable: str) -> None:
    proc = start_app(**env)
    assert proc.wait(timeout=30) == 2
    err = proc.stderr.read()
    assert "invalid configuration" in err and variable in err
    assert repr(next(iter(env.values()))) in err


def test_logs_are_json_without_image_bytes(probe, capfd) -> None:
    proc = start_app(FACEGATE_TESTAPP_PORT=str(port := free_port()))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            deadline = time.monotonic() + 20
            while health_check(f"127.0.0.1:{port}", timeout=1) != "SERVING" and time.monotonic() < deadline:
                time.sleep(0.1)
            payload = jpeg()
            detect(ch, payload)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    lines = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
    rpc = [entry for entry in lines if entry["msg"] == "rpc"]
    assert rpc and rpc[0]["method"] == "Detect" and rpc[0]["code"] == "OK" and rpc[0]["request_id"]
    assert all(payload.hex()[:40] not in json.dumps(entry) for entry in lines)
