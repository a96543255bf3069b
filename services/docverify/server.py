"""gRPC servicer for the docverify service."""

from __future__ import annotations

import grpc

from facegate.v1 import docverify_pb2_grpc
from services.docverify.config import DocverifySettings
from services.runtime.config import RuntimeSettings
from services.runtime.server import run_service


class DocVerifyService(docverify_pb2_grpc.DocVerifyServiceServicer):
    service_names = ("facegate.v1.DocVerifyService",)

    def __init__(self, settings: DocverifySettings, runtime: RuntimeSettings) -> None:
        self.settings = settings
        self.runtime = runtime

    def register(self, server: grpc.Server) -> None:
        docverify_pb2_grpc.add_DocVerifyServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    run_service("docverify", DocverifySettings, DocVerifyService)
