"""`make run`'s launcher: the whole stack as real processes, SERVING, tracing one request id across
services, and stopping on Ctrl-C. One stack per module; the Ctrl-C test runs last."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from facegate.client import health_check, open_channel
from facegate.endpoints import SERVICE_NAMES
from facegate.v1 import common_pb2, docverify_pb2, docverify_pb2_grpc
from tests.support import FACES, REPO, child_processes, read_until_serving, start_launcher

pytestmark = pytest.mark.slow

LIVE = FACES / "images/Ai_Sugiyama/Ai_Sugiyama_0001.jpg"
PORTRAIT = FACES / "images/Ai_Sugiyama/Ai_Sugiyama_0002.jpg"


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
    var = tmp_path_factory.mktemp("stack") / "var"
    proc, ports, _ = start_launcher(var)
    running = Stack(proc, var, ports)
    try:
        read_until_serving(proc, running.lines)
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_every_service_comes_up_serving(stack: Stack) -> None:
    assert any("all services SERVING" in line for line in stack.lines), "\n".join(stack.lines)
    for label in SERVICE_NAMES:
        assert health_check(stack.target(label), SERVICE_NAMES[label]) == "SERVING", label


def test_the_console_is_printed_with_its_url_and_serves_the_login_page(stack: Stack) -> None:
    import urllib.request

    (line,) = [line for line in stack.lines if line.startswith("console ") and "http://" in line]
    url = line.split()[1]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    with urllib.request.urlopen(url + "login", timeout=10) as page:
        assert page.status == 200 and b"API key" in page.read()


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


def facegate_cli(stack: Stack, *argv: str) -> subprocess.CompletedProcess:
    keys = dict(
        line.split("=", 1) for line in (stack.var / "dev-keys.env").read_text().splitlines() if "=" in line
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACEGATE_API_KEY": keys["FACEGATE_KIOSK_KEY"]}
    return subprocess.run(
        [sys.executable, "-m", "facegate", *argv, "--target", stack.target("gateway")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def verify_outcome(stack: Stack, live: Path, portrait: Path) -> str:
    done = facegate_cli(stack, "verify", "--live", str(live), "--portrait", str(portrait), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["outcome"]


def test_the_kiosk_decides_fails_closed_while_a_service_is_killed_and_recovers(
    stack: Stack, tmp_path
) -> None:
    """The README's first screen: ACCEPT for one person, REFER for two, REFER while embedding is
    killed (the launcher restarts it), ACCEPT again after; the audit trail verifies."""
    from tests.gateway.conftest import OTHER_PERSON, TRAVELLER, gate_frame

    live = tmp_path / "live.jpg"
    live.write_bytes(gate_frame(TRAVELLER / "Amram_Mitzna_0001.jpg"))
    portrait = TRAVELLER / "Amram_Mitzna_0002.jpg"
    assert verify_outcome(stack, live, portrait) == "ACCEPT"
    assert verify_outcome(stack, live, OTHER_PERSON) == "REFER"

    embedding = [p for p in child_processes(stack.proc.pid) if "services.embedding" in p[1]]
    assert len(embedding) == 1, embedding
    os.kill(embedding[0][0], signal.SIGKILL)
    time.sleep(0.5)
    assert verify_outcome(stack, live, portrait) == "REFER"  # fail closed, the gateway still answers
    deadline = time.monotonic() + 240
    outcome = "REFER"
    while outcome != "ACCEPT" and time.monotonic() < deadline:
        time.sleep(2)
        outcome = verify_outcome(stack, live, portrait)
    assert outcome == "ACCEPT", "the restarted embedding service never came back"
    # The supervisor counted the restart, and `facegate health` shows it. Its status file follows its
    # own health polls (every 0.5 s), so it may say "starting" for a moment after the first ACCEPT.
    deadline = time.monotonic() + 30
    status = json.loads((stack.var / "launcher-status.json").read_text())["services"]
    while status["embedding"]["state"] != "serving" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = json.loads((stack.var / "launcher-status.json").read_text())["services"]
    assert status["embedding"]["restarts"] == 1 and status["embedding"]["last_exit_code"] == -9, status
    assert status["embedding"]["state"] == "serving" and status["embedding"]["pid"] != embedding[0][0]
    assert status["detection"]["restarts"] == 0 and status["gateway"]["state"] == "serving", status
    targets = [f"--target={label}={stack.target(label)}" for label in SERVICE_NAMES]
    health = subprocess.run(
        [sys.executable, "-m", "facegate", "health", *targets, "--var-dir", str(stack.var)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert health.returncode == 0, health.stdout + health.stderr
    line = next(x for x in health.stdout.splitlines() if x.startswith("embedding"))
    assert "SERVING  restarts 1 (last exit -9 at " in line, health.stdout
    done = subprocess.run(
        [sys.executable, "-m", "facegate", "audit", "verify", str(stack.var / "audit" / "audit.log")],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.startswith("OK: "), done.stdout + done.stderr


def test_ctrl_c_stops_every_service(stack: Stack) -> None:
    stack.proc.send_signal(signal.SIGINT)
    out, _ = stack.proc.communicate(timeout=60)
    lines = stack.lines + out.splitlines()
    assert stack.proc.returncode == 0, "\n".join(lines)
    assert lines[-1] == "stopped"
    status = json.loads((stack.var / "launcher-status.json").read_text())["services"]
    assert {entry["state"] for entry in status.values()} == {"stopped"}, status
    for label in SERVICE_NAMES:
        assert health_check(stack.target(label), timeout=1) == "UNREACHABLE"
