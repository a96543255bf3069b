"""gRPC servicer for the gateway service."""

from __future__ import annotations

import grpc

from facegate.v1 import gateway_pb2_grpc
from gateway.config import GatewaySettings
from services.runtime.config import RuntimeSettings
from services.runtime.server import run_service


class GatewayService(gateway_pb2_grpc.GatewayServiceServicer):
    service_names = ("facegate.v1.GatewayService",)

    def __init__(self, settings: GatewaySettings, runtime: RuntimeSettings) -> None:
        self.settings = settings
        self.runtime = runtime

    def register(self, server: grpc.Server) -> None:
        gateway_pb2_grpc.add_GatewayServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    run_service("gateway", GatewaySettings, GatewayService)
