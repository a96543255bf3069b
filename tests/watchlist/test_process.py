"""The service as `make run` starts it: its own process, configured by MILVUS_URI in the environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from facegate.client import channel, wait_until_serving
from facegate.v1 import watchlist_pb2 as pb
from facegate.v1 import watchlist_pb2_grpc
from tests.support import REPO
from tests.watchlist.milvus_server import free_ports


def test_process_reads_a_lite_path_from_milvus_uri_and_drains_on_sigterm(tmp_path):
    # pymilvus itself rejects a Lite path in MILVUS_URI at import; the service must still start.
    port = free_ports(1)[0]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MILVUS_URI": str(tmp_path / "milvus" / "watchlist.db"),
        "FACEGATE_WATCHLIST_PORT": str(port),
        "FACEGATE_WATCHLIST_METRICS_PORT": "-1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.watchlist"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_until_serving(f"127.0.0.1:{port}", "facegate.v1.WatchlistService", timeout=120), (
            "not serving"
        )
        with channel(f"127.0.0.1:{port}") as ch:
            stub = watchlist_pb2_grpc.WatchlistServiceStub(ch)
            stub.CreateWatchlist(pb.CreateWatchlistRequest(name="proc", kind=pb.WATCHLIST_KIND_ALERT))
            stats = stub.Stats(pb.StatsRequest())
        assert stats.backend == "milvus-lite" and stats.index_type == "IN_PROCESS_EXACT"
        assert [w.name for w in stats.watchlists] == ["proc"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert (tmp_path / "milvus" / "watchlist.db").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
