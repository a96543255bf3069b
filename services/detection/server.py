"""gRPC servicer for the detection service."""

from __future__ import annotations

import grpc

from facegate.v1 import detection_pb2_grpc
from services.detection.config import DetectionSettings
from services.runtime.config import RuntimeSettings
from services.runtime.server import run_service


class DetectionService(detection_pb2_grpc.DetectionServiceServicer):
    service_names = ("facegate.v1.DetectionService",)

    def __init__(self, settings: DetectionSettings, runtime: RuntimeSettings) -> None:
        self.settings = settings
        self.runtime = runtime

    def register(self, server: grpc.Server) -> None:
        detection_pb2_grpc.add_DetectionServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    run_service("detection", DetectionSettings, DetectionService)
