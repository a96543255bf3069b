"""Test support: real servers on loopback ephemeral ports, and the shared dev data paths."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import grpc
import pytest

from facegate.client import channel
from facegate.endpoints import SERVICE_NAMES
from services.runtime.config import RuntimeSettings, load_settings
from services.runtime.server import RunningServer, Servicer, start_server

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FACES = SHARED_DATA / "faces"
DOCUMENTS = SHARED_DATA / "documents"


@contextlib.contextmanager
def serve(servicer: Servicer, label: str = "test", **runtime_overrides: object) -> Iterator[RunningServer]:
    """Start ``servicer`` on 127.0.0.1:<free port> through the real runtime, warmed up and SERVING."""
    runtime = load_settings(RuntimeSettings, **runtime_overrides)
    running = start_server(label=label, servicer=servicer, runtime=runtime, port=0, metrics_port=0)
    try:
        servicer.warmup()
        running.set_serving(True)
        yield running
    finally:
        running.drain(0)


@contextlib.contextmanager
def stopped(running: RunningServer) -> Iterator[None]:
    """Stop ``running`` for the block (as if its process died), then serve it again on the same port.

    The servicer (and its loaded model) is kept, so the restart costs no model load; callers of
    the old address reconnect by themselves, as they would to a restarted process.
    """
    running.drain(0)
    try:
        yield
    finally:
        assert running.servicer is not None and running.runtime is not None
        fresh = start_server(
            label=running.label, servicer=running.servicer, runtime=running.runtime, port=running.port
        )
        fresh.set_serving(True)
        running.server, running.health, running._stopped = fresh.server, fresh.health, fresh._stopped


@contextlib.contextmanager
def connect(running: RunningServer) -> Iterator[grpc.Channel]:
    with channel(f"127.0.0.1:{running.port}") as ch:
        yield ch


def child_processes(parent: int) -> list[tuple[int, str]]:
    """(pid, command line) of the direct children of ``parent`` (read from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            out.append((int(entry.name), cmdline))
    return out


def openssl(*args: str) -> None:
    """Run openssl (test certificates); fails the test with the install hint when it is missing."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates (apt-get install openssl)")
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def self_signed(folder: Path, name: str, san: str = "IP:127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``san`` (default 127.0.0.1) and its key: (cert, key) PEM paths."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}"),
        *("-addext", f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert)),
    )
    return cert, key


def make_pki(d: Path, names: Sequence[str]) -> dict[str, Path]:
    """In ``d``: a CA (ca.pem, ca.key), a certificate and key per name it signed for 127.0.0.1
    (<name>.pem, <name>.key; server and client use), and an outsider's self-signed pair; by file name."""
    ca, ca_key = d / "ca.pem", d / "ca.key"
    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=facegate-ca"),
        *("-keyout", str(ca_key), "-out", str(ca)),
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in names:
        key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(key),
            "-out",
            str(csr),
        )
        openssl(
            *("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial"),
            *("-days", "1", "-extfile", str(d / "san.ext"), "-out", str(cert)),
        )
    self_signed(d, "outsider")
    return {p.name: p for p in d.iterdir()}


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (bound together, then released)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_launcher(
    var: Path, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen, dict[str, int], dict[str, int]]:
    """`make run`'s launcher as a real process tree on free loopback ports, its data under ``var``.

    ``env`` (default: this process's environment) is what the services start with. Returns the
    process (its own session: kill the group) and each service's gRPC and metrics port.
    """
    labels = list(SERVICE_NAMES)
    ports = free_ports(2 * len(labels))
    grpc_ports = {label: ports[2 * i] for i, label in enumerate(labels)}
    metrics_ports = {label: ports[2 * i + 1] for i, label in enumerate(labels)}
    full = {**(os.environ if env is None else env), "PYTHONPATH": str(REPO), "FACEGATE_VAR_DIR": str(var)}
    for label in labels:
        full[f"FACEGATE_{label.upper()}_PORT"] = str(grpc_ports[label])
        full[f"FACEGATE_{label.upper()}_METRICS_PORT"] = str(metrics_ports[label])
    full["FACEGATE_CONSOLE_PORT"] = str(free_ports(1)[0])  # the web console, never 8080 in tests
    proc = subprocess.Popen(
        [sys.executable, "-m", "facegate.launcher"],
        env=full,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return proc, grpc_ports, metrics_ports


def read_until_serving(proc: subprocess.Popen, lines: list[str], timeout_s: float = 400) -> None:
    """Append the launcher's output to ``lines`` until it says every service is SERVING (or stops)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            return
        lines.append(line.rstrip())
        if "all services SERVING" in line:
            return
