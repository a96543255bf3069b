"""A small servicer that exercises the shared runtime without loading models.

It implements DetectionService.Detect by decoding the image with the runtime's decoder and
reporting its size (no faces). ``options.max_faces`` doubles as "sleep this many tenths of a
second" so tests can hold a call in flight; ``options.min_face_size`` selects a domain error.
Run as a process (``python -m tests.runtime.app``) to test signals and config end to end.
"""

from __future__ import annotations

import os
import time

import grpc
from pydantic_settings import SettingsConfigDict

from facegate.v1 import detection_pb2, detection_pb2_grpc
from services.runtime import errors
from services.runtime.config import MetricsPort, Port, RuntimeSettings, ServiceSettings
from services.runtime.images import decode_image
from services.runtime.server import run_service

RAISES = {
    1: errors.InvalidArgument("bad field"),
    2: errors.FailedPrecondition("model version mismatch"),
    3: errors.Unavailable("downstream down"),
    4: RuntimeError("secret internal detail /etc/passwd"),
}


class AppSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_TESTAPP_", extra="ignore", frozen=True)

    port: Port = 0
    metrics_port: MetricsPort = -1
    warmup_seconds: float = 0.0


class ImageProbe(detection_pb2_grpc.DetectionServiceServicer):
    service_names = ("facegate.v1.DetectionService",)

    def __init__(self, settings: AppSettings | None = None, runtime: RuntimeSettings | None = None) -> None:
        self.settings = settings
        self.runtime = runtime or RuntimeSettings()

    def register(self, server: grpc.Server) -> None:
        detection_pb2_grpc.add_DetectionServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        if self.settings is not None and self.settings.warmup_seconds:
            time.sleep(self.settings.warmup_seconds)

    def close(self) -> None:
        pass

    def Detect(self, request: detection_pb2.DetectRequest, context: grpc.ServicerContext):
        if request.options.HasField("min_face_size") and request.options.min_face_size in RAISES:
            raise RAISES[request.options.min_face_size]
        if request.options.HasField("max_faces"):
            time.sleep(request.options.max_faces / 10)
        rgb = decode_image(
            request.image.data,
            max_bytes=self.runtime.image_max_bytes,
            max_pixels=self.runtime.image_max_pixels,
        )
        return detection_pb2.DetectResponse(
            subject_index=-1, image_width=rgb.shape[1], image_height=rgb.shape[0], detection_scale=1.0
        )


if __name__ == "__main__":
    os.environ.setdefault("FACEGATE_LOG_LEVEL", "INFO")
    run_service("testapp", AppSettings, ImageProbe)
