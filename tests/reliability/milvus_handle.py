"""A Milvus 2.3.5 standalone server (the `milvus` wheel) that a test can kill -9 and start again on
the same ports and data, next to any other Milvus server on the machine.

Two things in the wheel stood between this suite and a completed run on the server path:
- its embedded etcd listens on etcd's default ports 2379 and 2380 whatever the wheel is told, so a
  second server on the machine (a benchmark, the watchlist tests) made this one fail to start, and
  the suite skipped it. Here etcd gets its own free ports through an embedded-etcd config file
  (Milvus's ``etcd.config.path``), so servers coexist;
- its start checks each port with a plain ``bind`` (no SO_REUSEADDR), which fails for a minute
  after a kill -9 while the killed server's connections sit in TIME_WAIT, although Milvus itself
  (Go sets SO_REUSEADDR) could bind at once. Here the check uses SO_REUSEADDR, so a restart is timed
  for what it costs Milvus, not for the kernel's TIME_WAIT.
"""

from __future__ import annotations

import atexit
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.watchlist.milvus_server import PORT_KEYS, SERVER_CONFIG, free_ports

#: Where the wheel's config template enables the embedded etcd; its config file goes just above.
EMBED_LINE = "  use:\n    embed: true"


def bind_reusable(port: int) -> socket.socket | None:
    """The wheel's port check, with SO_REUSEADDR as Milvus binds (a port in TIME_WAIT is free)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


class MilvusHandle:
    """One Milvus server on free loopback ports (etcd's included) under ``base``."""

    def __init__(self, base: Path) -> None:
        from milvus import MilvusServer  # dev dependency: the server-path tests only

        self.base = base
        self.server = MilvusServer(wait_for_started=False)
        self.server.set_base_dir(str(base))
        self.server.config.try_bind_port = bind_reusable
        ports = free_ports(len(PORT_KEYS) + 2)
        for key, port in zip(PORT_KEYS, ports, strict=False):
            self.server.config.configs[key] = port
        self.server.webservice_port = ports[-2]
        for key, value in SERVER_CONFIG.items():  # searched as the watchlist tests' server is
            self.server.config.set(key, value)
        self._own_etcd_ports(client=self.server.config.configs["etcd_port"], peer=ports[-1])
        self.uri = f"http://127.0.0.1:{self.server.config.configs['proxy_port']}"
        self.starts = 0

    def _own_etcd_ports(self, client: int, peer: int) -> None:
        config = self.base / "configs" / "embed-etcd.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "name: default\n"
            f"listen-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{peer}\n"
            f"listen-client-urls: http://127.0.0.1:{client}\n"
            f"advertise-client-urls: http://127.0.0.1:{client}\n"
            f"log-outputs: [{self.base / 'logs' / 'etcd.log'}]\n"
        )
        template = self.server.config.template_text
        assert EMBED_LINE in template, "the milvus wheel's config template changed"
        self.server.config.template_text = template.replace(
            EMBED_LINE, f"  config:\n    path: {config}\n{EMBED_LINE}"
        )

    @property
    def pid(self) -> int | None:
        proc = self.server.server_proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self, timeout: float = 420) -> None:
        """Start it and wait for its health endpoint (a start takes 10 s to minutes on 2 busy
        cores); a start that dies is tried again until ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.starts += 1
            try:
                self.server.start()  # returns at once (wait_for_started=False)
            except RuntimeError:  # a port taken by something else: try again shortly
                self.server.stop()
                time.sleep(2)
                continue
            if self._wait_healthy(deadline):
                return
            self.server.stop()
            time.sleep(2)
        raise AssertionError(f"Milvus did not start within {timeout:.0f}s; see {self.base / 'logs'}")

    def _wait_healthy(self, deadline: float) -> bool:
        proc = self.server.server_proc
        health = f"http://127.0.0.1:{self.server.webservice_port}/healthz"
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(health, timeout=5) as reply:
                    if b"OK" in reply.read():
                        return True
            except OSError:
                pass
            time.sleep(0.5)
        return False

    def kill(self) -> None:
        """kill -9, as a crash would; then close the wheel's log files (the process is gone)."""
        proc = self.server.server_proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        self.server.stop()

    def stop(self) -> None:
        self.server.stop()


@contextmanager
def running_milvus(base: Path) -> Iterator[MilvusHandle]:
    """A started MilvusHandle, stopped at the end (also when the run is interrupted)."""
    handle = MilvusHandle(base)
    atexit.register(handle.stop)
    try:
        handle.start()
        yield handle
    finally:
        handle.stop()
        atexit.unregister(handle.stop)
