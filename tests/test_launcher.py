"""`make run`'s launcher: all five processes come up SERVING on grpc.health.v1 and stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from facegate.client import health_check
from facegate.endpoints import SERVICE_NAMES
from tests.support import REPO


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_launcher_brings_up_every_service_and_stops_them_on_ctrl_c(tmp_path) -> None:
    labels = list(SERVICE_NAMES)
    ports = free_ports(2 * len(labels))
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACEGATE_VAR_DIR": str(tmp_path / "var")}
    for i, label in enumerate(labels):
        env[f"FACEGATE_{label.upper()}_PORT"] = str(ports[2 * i])
        env[f"FACEGATE_{label.upper()}_METRICS_PORT"] = str(ports[2 * i + 1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "facegate.launcher"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "all services SERVING" in line:
                break
        assert any("all services SERVING" in line for line in lines), "\n".join(lines)
        for i, label in enumerate(labels):
            target = f"127.0.0.1:{ports[2 * i]}"
            assert health_check(target, SERVICE_NAMES[label]) == "SERVING", label
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        lines += out.splitlines()
        assert proc.returncode == 0, "\n".join(lines)
        assert lines[-1] == "stopped"
        for i in range(len(labels)):
            assert health_check(f"127.0.0.1:{ports[2 * i]}", timeout=1) == "UNREACHABLE"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
