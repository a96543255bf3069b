"""A real Milvus 2.3.5 standalone server (the `milvus` wheel) for tests and benchmarks.

Every port the server opens is chosen here, from the OS's free ports, never one of the ports other
local services use (Redis, Postgres, MariaDB, RabbitMQ, Mosquitto, NATS, facegate's defaults). The
wheel's own defaults would probe upwards from 9091, which runs into facegate's metrics ports.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from facegate.endpoints import DEFAULT_PORTS

RESERVED_PORTS = frozenset(
    {6379, 5432, 3306, 5672, 15672, 1883, 4222, 8222, 2379, 2380, 9091, 19530}
    | {p for ports in DEFAULT_PORTS.values() for p in ports}
)
PORT_KEYS = (
    "etcd_port",
    "root_coord_port",
    "proxy_port",
    "proxy_internal_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports outside RESERVED_PORTS (held open until all are picked)."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            port = s.getsockname()[1]
            if port not in RESERVED_PORTS and port not in ports:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


#: Milvus settings that differ from the wheel's defaults (dotted milvus.yaml keys).
#: ``queryNode.segcore.interimIndex``: until the HNSW index reaches the query node, Milvus serves new
#: rows (growing segments: a template enrolled a minute ago; sealed ones not yet indexed) through an
#: interim IVF index. At its default nprobe 16 of 128 lists it missed 15-17 % of planted gate
#: matches at 100k whatever the search ef; at nprobe = nlist it scans every list, so those rows are
#: scored exactly (3-4x faster than Milvus's brute force with the interim index off). The same
#: values are in deploy/k8s/milvus/*/milvus.yaml (docs/watchlist.md, "Milvus server settings").
SERVER_CONFIG: Mapping[str, str] = {
    "queryNode.segcore.interimIndex.nlist": "128",
    "queryNode.segcore.interimIndex.nprobe": "128",
}


@dataclass
class RunningMilvus:
    uri: str
    base_dir: Path
    pid: int


@contextlib.contextmanager
def milvus_server(
    base_dir: Path | None = None, config: Mapping[str, str] = SERVER_CONFIG
) -> Iterator[RunningMilvus]:
    """Start a Milvus standalone server on loopback; stop it (and remove its data) on exit, always.

    ``config``: dotted milvus.yaml keys and their values (default SERVER_CONFIG).
    """
    from milvus import MilvusServer  # dev dependency: the server-path tests and benchmarks only

    owned = base_dir is None
    base = Path(base_dir or tempfile.mkdtemp(prefix="facegate-milvus-"))
    server = MilvusServer(wait_for_started=False)
    server.set_base_dir(str(base))
    ports = free_ports(len(PORT_KEYS) + 1)
    for key, port in zip(PORT_KEYS, ports, strict=False):
        server.config.configs[key] = port
    server.webservice_port = ports[-1]
    for key, value in config.items():
        server.config.set(key, value)
    atexit.register(server.stop)  # also when the test run is interrupted
    try:
        server.start()
        server.wait_started(timeout=120_000)
        yield RunningMilvus(
            uri=f"http://127.0.0.1:{server.config.configs['proxy_port']}",
            base_dir=base,
            pid=server.server_proc.pid,
        )
    finally:
        server.stop()
        atexit.unregister(server.stop)
        if owned:
            shutil.rmtree(base, ignore_errors=True)
