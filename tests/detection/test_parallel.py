"""FACEGATE_DETECTION_MAX_PARALLEL bounds how many MTCNN runs one process starts at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from facegate.v1 import detection_pb2
from services.detection.config import DetectionSettings
from services.detection.detector import Detection
from services.detection.policy import resolve
from services.detection.server import DetectionService
from services.runtime.config import RuntimeSettings, load_settings


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
