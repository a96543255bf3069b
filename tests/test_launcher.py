"""`make run`'s launcher: the whole stack as real processes, SERVING, tracing one request id across
services, and stopping on Ctrl-C. One stack per module; the Ctrl-C test runs last."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from facegate.client import health_check, open_channel
from facegate.endpoints import SERVICE_NAMES
from facegate.v1 import common_pb2, docverify_pb2, docverify_pb2_grpc
from tests.support import FACES, REPO

pytestmark = pytest.mark.slow

LIVE = FACES / "images/Ai_Sugiyama/Ai_Sugiyama_0001.jpg"
PORTRAIT = FACES / "images/Ai_Sugiyama/Ai_Sugiyama_0002.jpg"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class Stack:
    proc: subprocess.Popen
    var: Path
    ports: dict[str, int]
    lines: list[str] = field(default_factory=list)

    def target(self, label: str) -> str:
        return f"127.0.0.1:{self.ports[label]}"

    def log_lines(self, label: str) -> list[dict]:
        path = self.var / "logs" / f"{label}.log"
        out = []
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    labels = list(SERVICE_NAMES)
    ports = free_ports(2 * len(labels))
    var = tmp_path_factory.mktemp("stack") / "var"
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACEGATE_VAR_DIR": str(var)}
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
    running = Stack(proc, var, {label: ports[2 * i] for i, label in enumerate(labels)})
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            running.lines.append(line.rstrip())
            if "all services SERVING" in line:
                break
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_every_service_comes_up_serving(stack: Stack) -> None:
    assert any("all services SERVING" in line for line in stack.lines), "\n".join(stack.lines)
    for label in SERVICE_NAMES:
        assert health_check(stack.target(label), SERVICE_NAMES[label]) == "SERVING", label


def test_a_request_id_appears_in_the_log_of_every_service_it_touched(stack: Stack) -> None:
    rid = "trace-" + os.urandom(6).hex()
    request = docverify_pb2.VerifyRequest(
        live=common_pb2.Image(data=LIVE.read_bytes()),
        portrait_image=common_pb2.Image(data=PORTRAIT.read_bytes()),
    )
    with open_channel(stack.target("docverify")) as ch:
        reply, call = docverify_pb2_grpc.DocVerifyServiceStub(ch).Verify.with_call(
            request, metadata=(("x-request-id", rid),), timeout=120
        )
    assert dict(call.initial_metadata())["x-request-id"] == rid
    assert reply.model_version  # both faces were detected and embedded
    time.sleep(0.5)  # log lines are written as each call ends
    methods = {
        label: {
            e.get("method")
            for e in stack.log_lines(label)
            if e.get("request_id") == rid and e["msg"] == "rpc"
        }
        for label in ("docverify", "detection", "embedding", "watchlist")
    }
    assert methods["docverify"] == {"Verify"}
    assert methods["detection"] == {"Detect"}
    assert "Embed" in methods["embedding"]
    assert methods["watchlist"] == set()  # not touched, so the id is not there


def test_ctrl_c_stops_every_service(stack: Stack) -> None:
    stack.proc.send_signal(signal.SIGINT)
    out, _ = stack.proc.communicate(timeout=60)
    lines = stack.lines + out.splitlines()
    assert stack.proc.returncode == 0, "\n".join(lines)
    assert lines[-1] == "stopped"
    for label in SERVICE_NAMES:
        assert health_check(stack.target(label), timeout=1) == "UNREACHABLE"
