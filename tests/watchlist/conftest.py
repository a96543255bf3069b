"""Watchlist fixtures: the same contract tests run against Milvus Lite and a real Milvus server.

``backend`` is parametrised over both (and over Lite searched by Milvus instead of the in-process
index, over Lite with the in-process sign sketch used for every list, however small, and over the
server with in-process search kept in step by the change feed in Redis); the server (Milvus 2.3.5
standalone from the `milvus` wheel) starts once per session on free loopback ports and is stopped
at the end, pass or fail.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from facegate.v1 import watchlist_pb2_grpc
from services.runtime.config import RuntimeSettings, load_settings
from services.watchlist.config import WatchlistSettings
from services.watchlist.server import WatchlistService
from tests.support import connect, serve
from tests.watchlist.milvus_server import milvus_server


@dataclass
class Backend:
    """Where a test's watchlist service keeps its data."""

    name: str
    root: Path
    server_uri: str = ""
    search_mode: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)
    prefix: str = "t"  # of the collections: two backends on one server must not share them

    def settings(self, store: str = "main", **overrides: Any) -> WatchlistSettings:
        """Settings for an isolated store: its own Lite file, or its own collections on the server."""
        uri = self.server_uri or str(self.root / f"{store}.db")
        calibration = self.root / "calibration"
        calibration.mkdir(exist_ok=True)
        values: dict[str, Any] = {
            "MILVUS_URI": uri,
            "collection_prefix": f"{self.prefix}_{store}",
            "calibration_dir": calibration,
            "port": 0,
            "metrics_port": -1,
            "search_mode": self.search_mode,
            **self.overrides,
        }
        values.update(overrides)
        return load_settings(WatchlistSettings, **values)


@pytest.fixture(scope="session")
def milvus_uri() -> Iterator[str]:
    with milvus_server() as running:
        yield running.uri


@pytest.fixture(
    scope="session", params=["lite", "lite_sketch", "lite_milvus_search", "server", "server_feed"]
)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    root = tmp_path_factory.mktemp(f"watchlist-{request.param}")
    if request.param == "server":
        return Backend("server", root, request.getfixturevalue("milvus_uri"))
    if request.param == "server_feed":
        # The server with every replica searching in process, kept in step by the change feed.
        feed = {"change_feed_url": request.getfixturevalue("redis_url")}
        return Backend(
            request.param, root, request.getfixturevalue("milvus_uri"), overrides=feed, prefix="tf"
        )
    if request.param == "lite_milvus_search":
        # Lite searched by Milvus itself rather than the in-process index (FACEGATE_WATCHLIST_SEARCH_MODE=milvus)
        return Backend(request.param, root, search_mode="milvus")
    if request.param == "lite_sketch":
        # The in-process index's sign-sketch path (large lists) on lists of any size.
        return Backend(request.param, root, overrides={"sketch_min_templates": 1})
    return Backend("lite", root)


@contextlib.contextmanager
def running_service(settings: WatchlistSettings) -> Iterator[tuple[WatchlistService, Any]]:
    """A WatchlistService on a real loopback gRPC server, with a stub; closed on exit."""
    service = WatchlistService(settings, load_settings(RuntimeSettings))
    try:
        with serve(service, label="watchlist") as running, connect(running) as channel:
            yield service, watchlist_pb2_grpc.WatchlistServiceStub(channel)
    finally:
        service.close()


@pytest.fixture(scope="session")
def wl(backend: Backend) -> Iterator[Any]:
    """The shared service of one backend (tests use their own uniquely named lists)."""
    with running_service(backend.settings()) as (_service, stub):
        yield stub


@pytest.fixture
def list_name() -> str:
    return "t" + uuid.uuid4().hex[:12]
