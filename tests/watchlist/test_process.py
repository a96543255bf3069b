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


#: Run in a fresh interpreter: records OPENBLAS_THREAD_TIMEOUT at the moment numpy is first imported
#: (OpenBLAS reads it once, when numpy loads it), then imports the service package as
#: `python -m services.watchlist` does first.
_PROBE = """
import importlib.abc, os, sys
seen = []
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and not seen:
            seen.append(os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
        return None
sys.meta_path.insert(0, Probe())
import services.watchlist.server
print(seen[0] if seen else "numpy never imported")
"""


def _blas_timeout_when_numpy_loads(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    env.update(PYTHONPATH=str(REPO), **env_extra)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_openblas_threads_sleep_after_a_scan_in_a_watchlist_process(tmp_path):
    # With a Lite path in MILVUS_URI the package imports pymilvus (and numpy) at once: the default
    # must already be in place then, and on a server URI too.
    lite = str(tmp_path / "watchlist.db")
    assert _blas_timeout_when_numpy_loads({"MILVUS_URI": lite}) == "4"
    assert _blas_timeout_when_numpy_loads({"MILVUS_URI": "http://127.0.0.1:19530"}) == "4"
    # An operator's own value is kept.
    assert _blas_timeout_when_numpy_loads({"MILVUS_URI": lite, "OPENBLAS_THREAD_TIMEOUT": "12"}) == "12"
