"""Crash-safe enrolment: subjects are enrolled while kill -9 hits the watchlist service at random
moments (a real process on Milvus Lite, and in the full run on a Milvus server). After a restart,
every acknowledged enrolment is there and searchable, none that was refused or never
acknowledged is half there (a subject without its templates, or templates without their subject),
and a retry with the same idempotency key completes it (and a second retry replays it).

Random templates stand in for faces: what is tested is the store, not the model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from facegate.client import wait_until_serving
from facegate.endpoints import SERVICE_NAMES
from facegate.v1 import watchlist_pb2 as pb
from facegate.v1 import watchlist_pb2_grpc
from tests.reliability.conftest import BUDGET, FULL, Figures, free_ports
from tests.support import REPO
from tests.watchlist.helpers import emb, near, template, unit

pytestmark = pytest.mark.slow

LIST = "crash_test"


class WatchlistProcess:
    """``python -m services.watchlist`` on a free port, killed and restarted by the test."""

    def __init__(self, milvus_uri: str, log: Path) -> None:
        self.port = free_ports(1)[0]
        self.milvus_uri, self.log = milvus_uri, log
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "FACEGATE_WATCHLIST_PORT": str(self.port),
            "FACEGATE_WATCHLIST_METRICS_PORT": "-1",
            "MILVUS_URI": self.milvus_uri,
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.watchlist"], env=env, stdout=out, stderr=out
            )
        if not wait_until_serving(self.target, SERVICE_NAMES["watchlist"], timeout=180):
            raise AssertionError(
                f"watchlist did not come back; see {self.log}:\n{self.log.read_text()[-3000:]}"
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextmanager
def lite_uri(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "watchlist.db")


class MilvusHandle:
    """A Milvus standalone server (the `milvus` wheel) that the test can kill -9 and restart on
    the same ports and data (tests/watchlist/milvus_server.py's set-up, with the server kept)."""

    def __init__(self, base: Path) -> None:
        from milvus import MilvusServer

        from tests.watchlist.milvus_server import PORT_KEYS, free_ports

        self.base = base
        self.server = MilvusServer(wait_for_started=False)
        self.server.set_base_dir(str(base))
        ports = free_ports(len(PORT_KEYS) + 1)
        for key, port in zip(PORT_KEYS, ports, strict=False):
            self.server.config.configs[key] = port
        self.server.webservice_port = ports[-1]
        self.uri = f"http://127.0.0.1:{self.server.config.configs['proxy_port']}"

    def start(self, timeout: float = 420) -> None:
        """Start it; its ports may stay taken for a while after a kill, so retry until ``timeout``
        (a start alone takes minutes on 2 busy cores)."""
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.server.start()  # returns at once (wait_for_started=False)
            except RuntimeError:  # a port still taken
                self.server.stop()
                time.sleep(2)
                continue
            proc = self.server.server_proc
            health = f"http://127.0.0.1:{self.server.webservice_port}/healthz"
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(health, timeout=5) as reply:
                        if b"OK" in reply.read():
                            time.sleep(1)
                            return
                except OSError:
                    pass
                time.sleep(0.5)
            self.server.stop()  # it died (e.g. its etcd port still taken): try again
            time.sleep(2)
        raise AssertionError(f"Milvus did not start within {timeout:.0f}s; see {self.base / 'logs'}")

    def kill(self) -> None:
        proc = self.server.server_proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        self.server.stop()  # closes its log files; the process is gone already

    def stop(self) -> None:
        self.server.stop()


def etcd_peer_port_taken() -> bool:
    """The wheel's Milvus runs an embedded etcd on the fixed peer port 2380: one server per machine."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 2380))
        except OSError:
            return True
    return False


@contextmanager
def server_uri(tmp_path: Path) -> Iterator[MilvusHandle]:
    handle = MilvusHandle(tmp_path / "milvus")
    try:
        handle.start()
        yield handle
    finally:
        handle.stop()


BACKENDS = ["milvus-lite", "milvus-server"] if FULL and BUDGET.milvus_server else ["milvus-lite"]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("backend", BACKENDS)
def test_enrolments_survive_kill_9_of_the_watchlist_service(
    backend: str, tmp_path: Path, figures: Figures
) -> None:
    if backend == "milvus-server" and etcd_peer_port_taken():
        why = "another Milvus server holds etcd's fixed port 2380 on this machine"
        figures.notes.setdefault("skipped", {})["enrolment on milvus-server"] = why
        pytest.skip(why)
    n, kills = BUDGET.enrolments, BUDGET.enrolment_kills
    rng = np.random.default_rng(42)
    vectors = [unit(rng) for _ in range(n)]
    second = [near(rng, v, 0.2) for v in vectors]
    run = os.urandom(4).hex()

    def request(i: int) -> pb.EnrollSubjectRequest:
        return pb.EnrollSubjectRequest(
            watchlist=LIST,
            subject_id=f"subject-{i:04d}",
            idempotency_key=f"{run}-{i}",
            info=pb.SubjectInfo(category="wanted"),
            templates=[template(vectors[i]), template(second[i])],
        )

    with lite_uri(tmp_path) if backend == "milvus-lite" else server_uri(tmp_path) as milvus:
        uri = milvus if isinstance(milvus, str) else milvus.uri
        service = WatchlistProcess(uri, tmp_path / "watchlist.log")
        service.start()
        try:
            with grpc.insecure_channel(service.target) as ch:
                watchlist_pb2_grpc.WatchlistServiceStub(ch).CreateWatchlist(
                    pb.CreateWatchlistRequest(name=LIST, kind=pb.WATCHLIST_KIND_WANTED), timeout=60
                )
            acked: dict[int, str] = {}
            unacked: set[int] = set()
            killed: list[int] = []
            # kill -9 at random enrolments, at a random moment around the call (before it arrives,
            # in the middle of the Milvus writes, or just after the answer); restart each time
            points = rng.choice(np.arange(1, n), size=min(kills + 1, n - 1), replace=False).tolist()
            kill_at = set(points[:kills])
            # server mode: the Milvus server itself is killed once too, in the middle of the run
            milvus_at = points[kills] if isinstance(milvus, MilvusHandle) else None

            def kill_later(i: int, delay: float) -> threading.Thread:
                def run() -> None:
                    time.sleep(delay)
                    with service.lock:
                        service.kill()
                        killed.append(i)

                thread = threading.Thread(target=run, daemon=True)
                thread.start()
                return thread

            deadline = time.monotonic() + (900 if FULL else 240)
            i = 0
            with grpc.insecure_channel(service.target) as ch:
                stub = watchlist_pb2_grpc.WatchlistServiceStub(ch)
                while i < n and time.monotonic() < deadline:
                    killer = kill_later(i, float(rng.uniform(0, 0.08))) if i in kill_at else None
                    try:
                        reply = stub.EnrollSubject(request(i), timeout=15)
                        acked[i] = reply.subject.subject_id
                    except grpc.RpcError as exc:
                        unacked.add(i)
                        figures.status("enrolment", exc.code().name)
                    if killer is not None:
                        killer.join(timeout=30)
                        assert not killer.is_alive(), "the kill hung"
                        with service.lock:
                            service.start()
                    if i == milvus_at:
                        recovery, reply = kill_milvus_during(stub, milvus, request(i), figures)
                        figures.recovery["milvus server (watchlist direct)"] = round(recovery, 1)
                        acked[i] = reply.subject.subject_id  # the retry after recovery acknowledged it
                        unacked.discard(i)
                    i += 1
            assert i == n, f"only {i} of {n} enrolments tried in time"
            figures.add("enrolments_tried", n)
            figures.add("enrolments_acknowledged", len(acked))
            figures.add("enrolment_kills", len(killed))
            figures.add("faults_injected", len(killed))

            # After one more kill -9 and restart (the index is rebuilt from Milvus), check all of it.
            with service.lock:
                service.kill()
                service.start()
            with grpc.insecure_channel(service.target) as ch:
                stub = watchlist_pb2_grpc.WatchlistServiceStub(ch)
                lost = [i for i, sid in acked.items() if state(stub, sid, vectors[i]) != "complete"]
                half = [i for i in unacked if state(stub, f"subject-{i:04d}", vectors[i]) == "half"]
                figures.add("lost_acknowledged_enrolments", len(lost))
                figures.add("half_present_enrolments", len(half))
                assert not lost, f"acknowledged but not (all) there: {lost}"
                assert not half, f"half-present after a kill: {half}"
                # A retry with the same key completes what was not acknowledged, and replays what was.
                for i in sorted(unacked):
                    reply = stub.EnrollSubject(request(i), timeout=60)
                    assert state(stub, reply.subject.subject_id, vectors[i]) == "complete", i
                replays = [stub.EnrollSubject(request(i), timeout=60) for i in range(n)]
                assert not any(r.created for r in replays)
                figures.add("enrolment_retries_completed", len(unacked))
            assert len(killed) == len(kill_at) == kills, (killed, kill_at)
        finally:
            service.stop()
            done_log = (tmp_path / "watchlist.log").read_text(errors="replace")
            figures.notes.setdefault("enrolment_backends", {})[backend] = {
                "subjects": n,
                "kills": kills,
                "log_lines": len(done_log.splitlines()),
            }


def kill_milvus_during(stub, milvus: MilvusHandle, request, figures: Figures):
    """kill -9 the Milvus server; while it is down the watchlist service must answer (a defined
    status, within its Milvus timeout) and not acknowledge; restart Milvus; return the seconds
    until the watchlist service enrols again (it reconnects by itself, no restart), and that
    enrolment's reply (``request`` again, with its idempotency key)."""
    killed_at = time.monotonic()
    milvus.kill()
    figures.add("faults_injected")
    started = time.monotonic()
    try:
        stub.EnrollSubject(request, timeout=60)
        acknowledged = True
    except grpc.RpcError as exc:
        acknowledged = False
        figures.status("enrolment.milvus_down", exc.code().name)
        assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), exc
    assert not acknowledged, "an enrolment was acknowledged while Milvus was down"
    assert time.monotonic() - started < 60, "the watchlist service hung while Milvus was down"
    milvus.start()
    while time.monotonic() - killed_at < 600:
        try:
            stub.ListWatchlists(pb.ListWatchlistsRequest(), timeout=10)
            reply = stub.EnrollSubject(request, timeout=30)  # the same key: completes or replays
            return time.monotonic() - killed_at, reply
        except grpc.RpcError:
            time.sleep(1)
    figures.add("wedged_processes")
    raise AssertionError("the watchlist service did not recover after Milvus came back")


def state(stub, sid: str, vector: np.ndarray) -> str:
    """'complete' (the subject with both templates, found by search), 'absent' (no trace), or
    'half' (a subject without its templates, or templates found without their subject)."""
    try:
        subject = stub.GetSubject(pb.GetSubjectRequest(watchlist=LIST, subject_id=sid), timeout=60)
        templates = len(subject.templates)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
        subject, templates = None, 0
    request = pb.SearchRequest(probes=[emb(vector)], watchlists=[LIST], top_k=5)
    request.threshold = 0.9
    found = any(c.subject_id == sid for c in stub.Search(request, timeout=60).results[0].candidates)
    if subject is not None and templates == 2 and found:
        return "complete"
    if subject is None and not found:
        return "absent"
    return "half"
