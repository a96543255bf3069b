"""`make run`: every service and the gateway as local processes on their embedded defaults.

Starts Redis too when none answers at REDIS_URL and `redis-server` is installed; otherwise the
embedding service runs uncached (and this says so). A service that crashes is restarted with
backoff while the others keep answering (fail closed); Ctrl-C (or SIGTERM) drains and stops all.

This is the launcher side of the client layer: it starts services as child processes
(``python -m services.<name>``) and talks to them over gRPC, but never imports their code, so
the client package stays free of TensorFlow. :func:`local_services` starts a few of them on free
ports for commands such as ``facegate eval``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

from facegate.client import health_check, wait_until_serving
from facegate.endpoints import DEFAULT_PORTS, HOST, HTTP_PORTS, SERVICE_NAMES

#: start order: the gateway and docverify call the others, so they come last.
PROCESSES: list[tuple[str, str]] = [
    ("detection", "services.detection"),
    ("embedding", "services.embedding"),
    ("watchlist", "services.watchlist"),
    ("docverify", "services.docverify"),
    ("gateway", "gateway"),
    ("console", "console"),  # the officer and admin web console (HTTP), a client of the gateway
]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
READY_TIMEOUT_S = float(os.environ.get("FACEGATE_LAUNCHER_READY_TIMEOUT", "300"))
MODULES = dict(PROCESSES)


def _port(label: str) -> int:
    default = HTTP_PORTS[label] if label in HTTP_PORTS else DEFAULT_PORTS[label][0]
    return int(os.environ.get(f"FACEGATE_{label.upper()}_PORT", default))


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status == 200
    except OSError:
        return False


def is_serving(label: str) -> bool:
    """gRPC health for the services, GET /healthz for the HTTP front ends."""
    if label in HTTP_PORTS:
        return _http_ok(f"http://{HOST}:{_port(label)}/healthz")
    return health_check(f"{HOST}:{_port(label)}", SERVICE_NAMES[label], timeout=1.0) == "SERVING"


def endpoint_line(label: str) -> str:
    """What `make run` prints for one process: its gRPC and metrics endpoints, or its URL."""
    if label in HTTP_PORTS:
        return f"{label:<10} http://{HOST}:{_port(label)}/"
    return f"{label:<10} grpc {HOST}:{_port(label):<6} metrics http://{HOST}:{_metrics_port(label)}/metrics"


def _metrics_port(label: str) -> int:
    return int(os.environ.get(f"FACEGATE_{label.upper()}_METRICS_PORT", DEFAULT_PORTS[label][1]))


def _redis_answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def ensure_redis(env: dict[str, str], var: Path) -> subprocess.Popen | None:
    """Make REDIS_URL point at a live Redis, start a private one, or switch the cache off."""
    url = env.get("REDIS_URL", DEFAULT_REDIS_URL)
    if url == "":
        print("redis:     cache disabled (REDIS_URL is empty)")
        return None
    if _redis_answers(url):
        env["REDIS_URL"] = url
        print(f"redis:     {url}")
        return None
    server = shutil.which("redis-server")
    if server is None:
        env["REDIS_URL"] = ""
        print(f"redis:     none answers at {url} and redis-server is not installed: embeddings run UNCACHED")
        return None
    port = _free_port()
    (var / "redis").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            server,
            "--bind",
            HOST,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(var / "redis"),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://{HOST}:{port}/0"
    for _ in range(50):
        if _redis_answers(url):
            break
        time.sleep(0.1)
    env["REDIS_URL"] = url
    print(f"redis:     started a local redis-server at {url}")
    return proc


def start_process(label: str, env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """Start one service as a child process, its JSON log lines appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", MODULES[label]], env=dict(env), stderr=log, stdout=log)


def stop_processes(procs: Mapping[str, subprocess.Popen], timeout: float = 30) -> None:
    """SIGTERM (drain) every process still running; kill any that outlives ``timeout``."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for label, proc in procs.items():
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"{label} did not stop in time; killing it", file=sys.stderr)
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def local_services(
    labels: Sequence[str], overrides: Mapping[str, str] | None = None, log_dir: Path | None = None
) -> Iterator[dict[str, str]]:
    """Start ``labels`` as child processes on free loopback ports; yields label -> "host:port".

    The environment is this process's plus ``overrides`` (e.g. FACEGATE_EMBEDDING_FLIP_FUSION);
    metrics endpoints are off. Logs go to ``log_dir`` (a temporary folder by default). The
    processes are drained and stopped when the block ends, also on error.
    """
    env = {**os.environ, **(overrides or {})}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    targets = {}
    for label in labels:
        port = _free_port()
        env[f"FACEGATE_{label.upper()}_PORT"] = str(port)
        env[f"FACEGATE_{label.upper()}_METRICS_PORT"] = "-1"
        targets[label] = f"{HOST}:{port}"
    logs = Path(log_dir or tempfile.mkdtemp(prefix="facegate-local-"))
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    try:
        for label in labels:
            procs[label] = start_process(label, env, logs / f"{label}.log")
        for label in labels:
            if not wait_until_serving(targets[label], SERVICE_NAMES[label], timeout=READY_TIMEOUT_S):
                raise RuntimeError(f"{label} did not become SERVING; see {logs / (label + '.log')}")
        yield targets
    finally:
        stop_processes(procs)


def ensure_dev_keys(env: dict[str, str], var: Path) -> None:
    """One API key per role for the gateway (made on first start by the gateway's own key tool,
    which stores only their hashes); the plain keys go to var/dev-keys.env and are printed."""
    key_file = Path(env.setdefault("FACEGATE_GATEWAY_KEY_FILE", str(var / "gateway" / "keys.json")))
    env_file = var / "dev-keys.env"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.keys",
            "dev",
            "--key-file",
            str(key_file),
            "--env-file",
            str(env_file),
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"api keys:  {env_file} (source it; the CLI and SDK read FACEGATE_API_KEY or --key)")
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#"):
            print(f"           {line}")


#: A service that exits with this code was misconfigured: restarting cannot help, so all stop.
CONFIG_ERROR_EXIT = 2
MAX_BACKOFF_S = 30.0
#: A service that served this long before crashing starts its backoff afresh (1 s, not the last delay).
STABLE_AFTER_S = 60.0
#: What the supervisor last saw of each service (``facegate health`` shows it), under FACEGATE_VAR_DIR.
STATUS_FILE = "launcher-status.json"


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_status(var: Path) -> dict | None:
    """The launcher's last status file under ``var``, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((var / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


class Supervisor:
    """Keeps every service running: a crashed one restarts with exponential backoff while the
    others go on answering (their decisions fail closed meanwhile); a misconfigured one (exit 2)
    stops everything, since restarting it cannot help."""

    def __init__(self, env: Mapping[str, str], var: Path) -> None:
        self.env, self.logs, self.status_path = env, var / "logs", var / STATUS_FILE
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}  # restarts since the launcher started (the status file's count)
        self.streak: dict[str, int] = {}  # crashes in a row without a stable run: the backoff exponent
        self.restart_at: dict[str, float] = {}
        self.pending: set[str] = set()
        self.serving_since: dict[str, float] = {}
        self.status: dict[str, dict] = {}

    def start(self, label: str) -> None:
        self.procs[label] = start_process(label, self.env, self.logs / f"{label}.log")
        self.pending.add(label)
        self.serving_since.pop(label, None)
        self._set(label, state="starting", pid=self.procs[label].pid)

    def _set(self, label: str, **fields: object) -> None:
        entry = self.status.setdefault(label, {"state": "starting", "pid": None, "restarts": 0})
        entry.update(fields, restarts=self.restarts.get(label, 0))
        self.write_status()

    def write_status(self, stopped: bool = False) -> None:
        """Replace the status file atomically (a reader never sees half of it); best effort."""
        if stopped:
            for entry in self.status.values():
                entry.update(state="stopped", pid=None)
        doc = {"launcher_pid": os.getpid(), "updated": _utc_now(), "services": self.status}
        tmp = self.status_path.with_name(self.status_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
            os.replace(tmp, self.status_path)
        except OSError as exc:
            print(f"cannot write {self.status_path}: {exc}", file=sys.stderr)

    def check(self) -> bool:
        """Restart what crashed and report readiness; False when everything must stop."""
        now = time.monotonic()
        for label, proc in self.procs.items():
            if label in self.restart_at or proc.poll() is None:
                continue
            log = self.logs / f"{label}.log"
            if proc.returncode == CONFIG_ERROR_EXIT:
                print(f"{label} exited with code 2 (configuration); see {log}")
                return False
            count = self.restarts.get(label, 0) + 1
            self.restarts[label] = count
            since = self.serving_since.pop(label, None)
            streak = (
                1 if since is not None and now - since >= STABLE_AFTER_S else self.streak.get(label, 0) + 1
            )
            self.streak[label] = streak
            backoff = min(MAX_BACKOFF_S, 2.0 ** (streak - 1))
            self.restart_at[label] = now + backoff
            self.pending.discard(label)
            self._set(
                label, state="restarting", pid=None, last_exit_code=proc.returncode, last_exit_at=_utc_now()
            )
            print(
                f"{label} exited with code {proc.returncode}; restart {count} in {backoff:.0f}s (see {log})"
            )
        for label, when in list(self.restart_at.items()):
            if now >= when:
                del self.restart_at[label]
                self.start(label)
        for label in sorted(self.pending):
            if is_serving(label):
                self.pending.discard(label)
                self.serving_since[label] = time.monotonic()
                self._set(label, state="serving", serving_since=_utc_now())
                print(f"{label:<10} SERVING")
                if not self.pending and not self.restart_at:
                    print("all services SERVING — press Ctrl-C to stop")
        return True


def prepare_env(var: Path) -> tuple[dict[str, str], subprocess.Popen | None]:
    """The environment every service starts with, and a private Redis when one was started."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    redis_proc = ensure_redis(env, var)
    env.setdefault("MILVUS_URI", str(var / "milvus" / "watchlist.db"))
    env.setdefault("FACEGATE_GATEWAY_AUDIT_LOG", str(var / "audit" / "audit.log"))
    ensure_dev_keys(env, var)
    # Callers find their downstream services on the ports chosen here (overridable as usual).
    for caller in ("docverify", "gateway"):
        for callee in ("detection", "embedding", "watchlist", "docverify"):
            if callee != caller:
                env.setdefault(
                    f"FACEGATE_{caller.upper()}_{callee.upper()}_TARGET", f"{HOST}:{_port(callee)}"
                )
    env.setdefault("FACEGATE_CONSOLE_GATEWAY_TARGET", f"{HOST}:{_port('gateway')}")
    links = {label: f"http://{HOST}:{_metrics_port(label)}/metrics" for label in SERVICE_NAMES}
    env.setdefault("FACEGATE_CONSOLE_METRICS_LINKS", json.dumps(links))
    (var / "logs").mkdir(exist_ok=True)
    return env, redis_proc


def main() -> int:
    var = Path(os.environ.get("FACEGATE_VAR_DIR", "var")).resolve()
    var.mkdir(parents=True, exist_ok=True)
    env, redis_proc = prepare_env(var)
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)

    print(f"logs:      {var / 'logs'}/<service>.log (JSON lines)")
    supervisor = Supervisor(env, var)
    for label, _ in PROCESSES:
        supervisor.start(label)
        print(endpoint_line(label))

    deadline = time.monotonic() + READY_TIMEOUT_S
    code = 0
    while not stopping:
        if not supervisor.check():
            stopping, code = True, 1
        elif supervisor.pending and not supervisor.restarts and time.monotonic() > deadline:
            print(f"not SERVING after {READY_TIMEOUT_S:.0f}s: {', '.join(sorted(supervisor.pending))}")
            stopping, code = True, 1
        time.sleep(0.5)

    print("stopping…")
    stop_processes(supervisor.procs)
    supervisor.write_status(stopped=True)
    if redis_proc is not None:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
    print("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
