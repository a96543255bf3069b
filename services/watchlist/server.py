"""gRPC servicer for the watchlist service."""

from __future__ import annotations

import grpc

from facegate.v1 import watchlist_pb2_grpc
from services.runtime.config import RuntimeSettings
from services.runtime.server import run_service
from services.watchlist.config import WatchlistSettings


class WatchlistService(watchlist_pb2_grpc.WatchlistServiceServicer):
    service_names = ("facegate.v1.WatchlistService",)

    def __init__(self, settings: WatchlistSettings, runtime: RuntimeSettings) -> None:
        self.settings = settings
        self.runtime = runtime

    def register(self, server: grpc.Server) -> None:
        watchlist_pb2_grpc.add_WatchlistServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    run_service("watchlist", WatchlistSettings, WatchlistService)
