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
