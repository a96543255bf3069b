"""The reliability and security suite (issue 13): the whole stack as real processes under load,
kill -9 faults, crash-safe enrolment, generated bad inputs, the role matrix, log hygiene and the
audit trail.

Two budgets. ``make test`` runs the short one (a few hundred generated inputs, a short load, one
fault); ``make test-reliability`` sets FACEGATE_RELIABILITY=full: 20 kiosks for minutes, a kill -9
of every process in turn, >= 10,000 generated inputs, the Milvus server path, and it rewrites
bench/results/reliability.md with the figures. Every loop is bounded in count and in time, talks to
loopback only, and stops by itself.

``figures`` collects the numbers of the run; the tests assert the zero-figures (wrong ACCEPTs,
lost acknowledged enrolments, crashes, hangs) where they are measured, so a non-zero one fails
the suite; the full run writes the report at the end of the session.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from facegate.client import health_check
from facegate.endpoints import SERVICE_NAMES
from tests.support import FACES, REPO, child_processes, free_ports, read_until_serving, start_launcher

FULL = os.environ.get("FACEGATE_RELIABILITY", "") == "full"


@dataclass(frozen=True)
class Budget:
    parser_inputs: int  # generated inputs per parser (image decoder, DG2, MRZ)
    gateway_inputs: int  # generated gateway requests (all RPCs together)
    kiosks: int
    load_seconds: float  # the steady load phase
    load_max_requests: int
    faults: tuple[str, ...]  # processes killed in turn under load
    enrolments: int
    enrolment_kills: int
    milvus_server: bool  # the Milvus server path too (crash-safe enrolment, a Milvus kill)


SHORT = Budget(
    parser_inputs=150,
    gateway_inputs=150,
    kiosks=20,
    load_seconds=15,
    load_max_requests=200,
    faults=("docverify", "redis"),
    enrolments=24,
    enrolment_kills=3,
    milvus_server=False,
)
LONG = Budget(
    parser_inputs=3000,
    gateway_inputs=3000,
    kiosks=20,
    load_seconds=120,
    load_max_requests=5000,
    faults=("detection", "embedding", "watchlist", "docverify", "redis", "gateway"),
    enrolments=200,
    enrolment_kills=10,
    milvus_server=True,
)
BUDGET = LONG if FULL else SHORT
#: The longest a killed process may take to be back and deciding again (model loads on 2 cores).
RECOVERY_LIMIT_S = 180.0
REPORT = REPO / "bench" / "results" / "reliability.md"


# ---- figures and the report ----------------------------------------------------------------------


class Figures:
    """Counters of the run, thread-safe; written as the report by the full run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()  # "phase/CODE"
        self.recovery: dict[str, float] = {}
        self.notes: dict[str, object] = {}

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def status(self, phase: str, code: str) -> None:
        with self.lock:
            self.statuses[f"{phase}/{code}"] += 1

    def to_dict(self) -> dict:
        return {
            "counts": dict(sorted(self.counts.items())),
            "statuses": dict(sorted(self.statuses.items())),
            "recovery_s": self.recovery,
            "notes": self.notes,
        }


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    figs = Figures()
    started = time.monotonic()
    yield figs
    figs.notes["duration_s"] = round(time.monotonic() - started, 1)
    if FULL and whole_suite(request.session):
        from tests.reliability.report import write_report

        write_report(figs, REPORT)
    if os.environ.get("FACEGATE_RELIABILITY_FIGURES"):  # a part's figures, e.g. of a -k run
        Path(os.environ["FACEGATE_RELIABILITY_FIGURES"]).write_text(json.dumps(figs.to_dict(), indent=2))


def whole_suite(session: pytest.Session) -> bool:
    """Did this session select every test of the suite? Only such a run rewrites the report (a
    run of one file or ``-k`` is a check, not the figures of the suite)."""
    here = Path(__file__).parent
    files = {p.name for p in here.glob("test_*.py")}
    opts = session.config.option
    ran = {item.path.name for item in session.items if item.path.parent == here}
    return ran == files and not opts.keyword and not opts.markexpr


# ---- the stack: make run's launcher on free ports, with a Redis it can lose ----------------------


class PrivateRedis:
    """A redis-server this suite owns, so it can kill -9 it and start it again on the same port."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir = port, workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import shutil

        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed; the reliability suite needs one")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"redis-server did not answer on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Launched:
    proc: subprocess.Popen
    var: Path
    ports: dict[str, int]
    metrics_ports: dict[str, int]
    redis: PrivateRedis
    keys: dict[str, str]  # role -> plain key (make run's dev keys)
    output: list[str] = field(default_factory=list)  # the launcher's own lines
    peak_rss: dict[str, int] = field(default_factory=dict)
    milvus_pid: int | None = None
    accounting: Any = None  # this stack's audit book (test_stack.Accounting), when not the default one

    def target(self, label: str = "gateway") -> str:
        return f"127.0.0.1:{self.ports[label]}"

    @property
    def audit_log(self) -> Path:
        return self.var / "audit" / "audit.log"

    @property
    def key_file(self) -> Path:
        return self.var / "gateway" / "keys.json"

    def pid(self, label: str) -> int:
        module = {"gateway": "-m gateway"}.get(label, f"services.{label}")
        found = [pid for pid, cmd in child_processes(self.proc.pid) if cmd.rstrip().endswith(module)]
        assert len(found) == 1, (label, child_processes(self.proc.pid))
        return found[0]

    def status(self) -> dict:
        return json.loads((self.var / "launcher-status.json").read_text())["services"]

    def all_serving(self) -> bool:
        return all(
            health_check(self.target(label), SERVICE_NAMES[label], timeout=1.0) == "SERVING"
            for label in SERVICE_NAMES
        )

    def wait_serving(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.all_serving():
                return True
            time.sleep(0.5)
        return False

    def sample_rss(self) -> None:
        for label in SERVICE_NAMES:
            try:
                rss = rss_bytes(self.pid(label))
            except AssertionError:
                continue
            self.peak_rss[label] = max(self.peak_rss.get(label, 0), rss)

    def metrics(self, label: str) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_ports[label]}/metrics", timeout=5) as r:
            return r.read().decode()

    def drain_output(self) -> None:
        """Read what the launcher printed so far (non-blocking) into ``output``."""
        import select

        assert self.proc.stdout is not None
        while select.select([self.proc.stdout], [], [], 0)[0]:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line.rstrip())


#: Generous budgets for the load: on 2 shared cores 20 kiosks queue for the CPU, and a decision
#: that runs out of time fails closed (REFER), which would differ from the one-at-a-time answer.
LOAD_ENV = {
    "FACEGATE_GATEWAY_DOWNSTREAM_TIMEOUT_S": "120",
    "FACEGATE_GATEWAY_REQUEST_TIMEOUT_S": "300",
    "FACEGATE_DOCVERIFY_DOWNSTREAM_TIMEOUT_S": "120",
    "FACEGATE_WATCHLIST_MILVUS_TIMEOUT_S": "10",
}


@contextmanager
def stack(var: Path, extra_env: dict[str, str] | None = None) -> Iterator[Launched]:
    """`make run`'s launcher (facegate/launcher.py) as a real process tree on free ports, with
    ``var`` as FACEGATE_VAR_DIR and a private redis-server the suite can kill; ``extra_env`` on
    top (e.g. MILVUS_URI for a Milvus server)."""
    redis = PrivateRedis(free_ports(1)[0], var / "redis-private")
    redis.start()
    env = {
        **os.environ,
        **LOAD_ENV,
        "REDIS_URL": redis.url,
        "FACEGATE_LOG_LEVEL": "DEBUG",  # the scan below reads every line a service can write
        **(extra_env or {}),
    }
    env.pop("FACEGATE_GATEWAY_REDIS_URL", None)
    proc, ports, metrics_ports = start_launcher(var, env)
    running = Launched(proc, var, ports, metrics_ports, redis, {})
    try:
        read_until_serving(proc, running.output)
        assert any("all services SERVING" in x for x in running.output), "\n".join(running.output)
        for line in (var / "dev-keys.env").read_text().splitlines():
            if line.startswith("FACEGATE_") and "=" in line:
                name, value = line.split("=", 1)
                running.keys[name.removeprefix("FACEGATE_").removesuffix("_KEY").lower()] = value
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        running.drain_output()
        redis.stop()


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> Iterator[Launched]:
    """The stack as `make run` starts it (Milvus Lite)."""
    with stack(tmp_path_factory.mktemp("reliability") / "var") as running:
        yield running


# ---- calling the gateway ---------------------------------------------------------------------------

MAX_MESSAGE = 64 * 1024 * 1024


def gateway_channel(target: str) -> grpc.Channel:
    """A plain channel (no retries: every status the gateway gives is counted as it is)."""
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.enable_retries", 0),
        ],
    )


def call(
    ch: grpc.Channel,
    method: str,
    request,
    response_type,
    key: str | None,
    *,
    timeout: float = 300,
    rid: str = "",
):
    """Call GatewayService/``method``; returns (code name, response or None)."""
    fn = ch.unary_unary(
        f"/facegate.v1.GatewayService/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_type.FromString,
    )
    metadata = []
    if key is not None:
        metadata.append(("authorization", f"Bearer {key}"))
    if rid:
        metadata.append(("x-request-id", rid))
    try:
        return "OK", fn(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as exc:
        LAST_DETAILS.value = exc.details() or ""
        return exc.code().name, None


#: The status message of this thread's last failed call (e.g. to tell the gateway's own
#: back-pressure from a RESOURCE_EXHAUSTED a service gave for an oversized input).
LAST_DETAILS = threading.local()


# ---- what must never be logged --------------------------------------------------------------------

#: Base64 of JPEG/PNG headers, long base64 runs, raw image signatures, escaped byte runs.
IMAGE_PATTERNS = re.compile(
    r"/9j/|iVBORw0KGgo|UklGR|AAAADGpQ|[A-Za-z0-9+/]{120,}={0,2}|\xff\xd8\xff|JFIF|\x89PNG|(\\x[0-9a-f]{2}){16,}"
)
#: An MRZ line (or a long run of one): 30+ characters of A-Z, 0-9 and '<' with filler in it.
MRZ_PATTERN = re.compile(r"[A-Z0-9<]{10,}<<[A-Z0-9<]{10,}")


def dev_names() -> set[str]:
    """Every person's folder name of the dev photos ("Amram_Mitzna")."""
    return {p.name for p in (FACES / "images").iterdir() if p.is_dir()}


def scan_text(text: str, names: set[str], secrets: set[str], where: str) -> list[str]:
    """Findings of forbidden content in ``text`` (one entry per kind and place)."""
    found = []
    for m in IMAGE_PATTERNS.finditer(text):
        if len(set(m.group(0))) >= 8:  # not a run of one character (a generated "xxxx…" field)
            found.append(f"{where}: image-like bytes {m.group(0)[:40]!r}")
            break
    if m := MRZ_PATTERN.search(text):
        found.append(f"{where}: MRZ-like text {m.group(0)[:40]!r}")
    for token in set(re.findall(r"[A-Za-z][A-Za-z'-]*(?:_[A-Za-z][A-Za-z'-]*)+", text)):
        if token in names:
            found.append(f"{where}: dev person name {token!r}")
    for secret in secrets:
        if secret and secret in text:
            found.append(f"{where}: a secret ({secret[:6]}…)")
    return found
