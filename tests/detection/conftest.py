"""One detection server (one loaded MTCNN) for the whole test session."""

from __future__ import annotations

import pytest

from facegate.v1 import detection_pb2_grpc
from services.detection.config import DetectionSettings
from services.detection.server import DetectionService
from services.runtime.config import RuntimeSettings, load_settings
from tests.support import connect, serve

#: Runtime limits small enough that the oversize tests stay cheap, large enough for every test image.
MAX_BYTES = 3_000_000
MAX_PIXELS = 12_000_000


@pytest.fixture(scope="session")
def detection_server():
    settings = load_settings(DetectionSettings, port=0, metrics_port=-1)
    runtime = load_settings(RuntimeSettings, image_max_bytes=MAX_BYTES, image_max_pixels=MAX_PIXELS)
    servicer = DetectionService(settings, runtime)
    with serve(
        servicer, label="detection", image_max_bytes=MAX_BYTES, image_max_pixels=MAX_PIXELS
    ) as running:
        yield running


@pytest.fixture(scope="session")
def stub(detection_server):
    with connect(detection_server) as channel:
        yield detection_pb2_grpc.DetectionServiceStub(channel)
