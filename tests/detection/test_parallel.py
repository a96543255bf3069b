"""FACEGATE_DETECTION_MAX_PARALLEL bounds how many MTCNN runs one process starts at once; a call
whose deadline passes while it waits for a slot leaves without running."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from facegate.v1 import common_pb2, detection_pb2
from services.detection.config import DetectionSettings
from services.detection.detector import Detection
from services.detection.policy import resolve
from services.detection.server import DetectionService
from services.runtime.config import RuntimeSettings, load_settings
from tests.support import FACES


class CountingDetector:
    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def detect(self, images, min_face_px=20.0, *, scale_to_min_face=False):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        return [Detection(faces=[], scale=1.0) for _ in images]


def _most_at_once(max_parallel: int) -> int:
    settings = load_settings(DetectionSettings, port=0, metrics_port=-1, max_parallel=max_parallel)
    service = DetectionService(settings, load_settings(RuntimeSettings))
    service.detector = CountingDetector()  # type: ignore[assignment]
    policy = resolve(detection_pb2.DetectionOptions(), settings)
    image = np.zeros((8, 8, 3), np.uint8)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: service._detect([image], policy, "single"), range(16)))
    return service.detector.most  # type: ignore[attr-defined]


def test_default_runs_at_most_two_at_once():
    assert DetectionSettings.model_fields["max_parallel"].default == 2
    assert _most_at_once(2) == 2


def test_zero_leaves_only_the_grpc_pool_as_the_limit():
    assert _most_at_once(0) > 2


def test_a_call_whose_deadline_passes_in_the_queue_leaves_it_without_running(detection_server, stub):
    """Behind its callers, the service must not spend MTCNN runs on answers nobody waits for: with
    every slot taken, a call with a 0.5 s deadline gives up its place when the deadline passes (the
    queue is empty again while the slots are still held) and MTCNN never runs for it."""
    slots = detection_server.servicer._slots
    image = common_pb2.Image(data=(FACES / "images" / "Paul_Krueger" / "Paul_Krueger_0001.jpg").read_bytes())
    request = detection_pb2.DetectRequest(image=image)
    expired = REGISTRY.get_sample_value("facegate_detection_queue_expired_total") or 0.0
    runs = REGISTRY.get_sample_value("facegate_detection_mtcnn_seconds_count", {"mode": "single"}) or 0.0
    held = [slots.acquire(timeout=5) for _ in range(DetectionSettings.model_fields["max_parallel"].default)]
    try:
        assert all(held)
        with pytest.raises(grpc.RpcError) as late:
            stub.Detect(request, timeout=0.5)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 5
        while slots.waiting() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert slots.waiting() == 0  # left the queue at its deadline, not when a slot freed
        assert REGISTRY.get_sample_value("facegate_detection_queue_expired_total") == expired + 1
    finally:
        for _ in held:
            slots.release()
    assert len(stub.Detect(request, timeout=30).faces) == 1  # the slots came back whole
    assert REGISTRY.get_sample_value("facegate_detection_mtcnn_seconds_count", {"mode": "single"}) == runs + 1


def test_warm_up_gives_each_mtcnn_run_one_tensorflow_thread_by_default() -> None:
    """Two MTCNN runs at once (a kiosk's live frame and portrait) on TensorFlow's default pools
    start a machine-sized pool each; the service's defaults give each run one core. Checked in a
    fresh process, where TensorFlow has not started yet (this one shares it with other tests)."""
    import os
    import subprocess
    import sys

    script = (
        "import tensorflow as tf\n"
        "from services.detection.config import DetectionSettings\n"
        "from services.detection.server import DetectionService\n"
        "from services.runtime.config import RuntimeSettings\n"
        "DetectionService(DetectionSettings(), RuntimeSettings()).warmup()\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["1", "1"]
