"""Crash-safe enrolment: subjects are enrolled while kill -9 hits the watchlist service at random
moments (a real process on Milvus Lite, and in the full run on a Milvus server). After a restart,
every acknowledged enrolment is there and searchable, none that was refused or never
acknowledged is half there (a subject without its templates, or templates without their subject),
and a retry with the same idempotency key completes it (and a second retry replays it).

Random templates stand in for faces: what is tested is the store, not the model."""

from __future__ import annotations

import os
import signal
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
from tests.reliability.milvus_handle import MilvusHandle, running_milvus
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


BACKENDS = ["milvus-lite", "milvus-server"] if FULL and BUDGET.milvus_server else ["milvus-lite"]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("backend", BACKENDS)
def test_enrolments_survive_kill_9_of_the_watchlist_service(
    backend: str, tmp_path: Path, figures: Figures
) -> None:
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

    with lite_uri(tmp_path) if backend == "milvus-lite" else running_milvus(tmp_path / "milvus") as milvus:
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
                # Erasure: a removed subject is gone from every read the moment RemoveSubject answers.
                erase = sorted(acked)[: max(5, min(20, n // 10))]
                found = still_found_after_erasure(stub, [(acked[i], vectors[i]) for i in erase])
                figures.add("erasures", len(erase))
                figures.add("erased_subjects_still_found", len(found))
                assert not found, f"still found right after RemoveSubject: {found}"
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


def still_found_after_erasure(stub, subjects: list[tuple[str, np.ndarray]]) -> list[str]:
    """Remove each subject, then at once read it back (GetSubject and a Search with its template):
    an erased listing must not match at a gate, nor be shown, after RemoveSubject has answered.
    On a server this needs the store's Strong barrier on every collection the delete touched."""
    found = []
    for sid, vector in subjects:
        stub.RemoveSubject(pb.RemoveSubjectRequest(watchlist=LIST, subject_id=sid), timeout=60)
        if state(stub, sid, vector) != "absent":
            found.append(sid)
    return found


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
