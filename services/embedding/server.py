"""gRPC servicer for the embedding service."""

from __future__ import annotations

import grpc

from facegate.v1 import embedding_pb2_grpc
from services.embedding.config import EmbeddingSettings
from services.runtime.config import RuntimeSettings
from services.runtime.server import run_service


class EmbeddingService(embedding_pb2_grpc.EmbeddingServiceServicer):
    service_names = ("facegate.v1.EmbeddingService",)

    def __init__(self, settings: EmbeddingSettings, runtime: RuntimeSettings) -> None:
        self.settings = settings
        self.runtime = runtime

    def register(self, server: grpc.Server) -> None:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    run_service("embedding", EmbeddingSettings, EmbeddingService)
