"""Watchlist benchmark: search latency and recall@10 on Milvus Lite, a Milvus server and the default.

Three ways the service can search, each measured end to end through its Search RPC on loopback:
- ``lite+memory`` (the default for `make run`): Milvus Lite stores, the in-process exact index searches;
- ``lite+milvus``: Milvus Lite stores and searches (its HNSW index);
- ``server+milvus``: a real Milvus 2.3.5 standalone server (the `milvus` wheel) stores and searches.
Templates are random unit vectors (one per subject); probes are stored templates with noise
(cosine ~0.96), so every probe has a true nearest neighbour. Recall@10 is measured against an exact
numpy search over the same vectors. Also: enrolment throughput through EnrollSubject, bulk load
rate, start-up index rebuild time and the data size per 100k templates.

Gate screening rows (threshold = the calibrated FAR 1e-3 point) use *planted* probes, made at a
cosine of 0.55-0.9 to one stored template (a genuine-like match; random elsewhere), and pure-random
probes (near-ties, nothing at the threshold): recall@1 = the first candidate is the exact search's
first candidate (or both return nothing). The in-process index is also measured alone at every size
on random and on face-like vectors (a 34-dimensional subspace plus noise: impostor cosine sd ~0.16,
0.1 % above 0.48, like FaceNet's calibrated impostor scores), exact scan against the sign sketch.

Run: ``python -m bench watchlist`` (or ``python -m bench.bench_watchlist --sizes 10000,100000``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegate.client import channel, wait_until_serving
from facegate.v1 import common_pb2, watchlist_pb2_grpc
from facegate.v1 import watchlist_pb2 as pb
from services.runtime.config import RuntimeSettings, load_settings
from services.runtime.model_spec import DEFAULT
from services.watchlist.config import WatchlistSettings
from services.watchlist.memindex import MemoryIndex
from services.watchlist.server import WatchlistService
from services.watchlist.store import ListRow, MilvusStore, now_ms
from tests.support import REPO, connect, free_ports, serve
from tests.watchlist.helpers import insert_subjects, planted_near
from tests.watchlist.milvus_server import milvus_server

REPORT = Path(__file__).resolve().parent / "results" / "watchlist.md"
DIM = DEFAULT.dimension
VERSION = DEFAULT.model_version
LIST = "bench"
BATCH = 32
LOAD_CHUNK = 5000
#: The calibrated FAR 1e-3 and 1e-4 thresholds of the shipped FaceNet calibration (facegate/calibration).
GATE_THRESHOLD = 0.5089
STRICT_THRESHOLD = 0.6286
#: Lite's own search grows ~17 ms per 1,000 rows: above this size it is not measured.
LITE_MILVUS_MAX = 100_000


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def probes_for(rng: np.random.Generator, data: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Probes made from stored templates plus noise, and which template each came from (its mate)."""
    mates = rng.integers(0, len(data), count)
    noisy = data[mates] + 0.3 * unit_vectors(rng, count)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32), mates


def exact_top10(data: np.ndarray, probes: np.ndarray) -> list[set[int]]:
    out: list[set[int]] = []
    for lo in range(0, len(probes), 100):
        scores = data @ probes[lo : lo + 100].T
        top = np.argpartition(-scores, 10, axis=0)[:10]
        out += [set(top[:, q].tolist()) for q in range(top.shape[1])]
    return out


def exact_best(data: np.ndarray, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and score of every probe's exact nearest template."""
    best, score = [], []
    for lo in range(0, len(probes), 100):
        scores = data @ probes[lo : lo + 100].T
        i = np.argmax(scores, axis=0)
        best.append(i)
        score.append(scores[i, np.arange(len(i))])
    return np.concatenate(best), np.concatenate(score)


def planted_probes(rng: np.random.Generator, data: np.ndarray, count: int) -> np.ndarray:
    """Probes at cosine 0.55-0.9 to one stored template each (a genuine-like match), random elsewhere."""
    return planted_near(rng, data[rng.integers(0, len(data), count)])


def face_like(rng: np.random.Generator, n: int, basis: np.ndarray) -> np.ndarray:
    """Unit vectors with FaceNet-like impostor scores: a 34-d subspace plus isotropic noise."""
    out = np.empty((n, DIM), dtype=np.float32)
    for lo in range(0, n, 100_000):
        m = min(100_000, n - lo)
        z = rng.standard_normal((m, basis.shape[1])).astype(np.float32) @ basis.T
        z += 0.25 * np.sqrt(basis.shape[1] / DIM) * rng.standard_normal((m, DIM)).astype(np.float32)
        out[lo : lo + m] = z / np.linalg.norm(z, axis=1, keepdims=True)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def settings_for(uri: str, mode: str, prefix: str) -> WatchlistSettings:
    return load_settings(
        WatchlistSettings,
        MILVUS_URI=uri,
        collection_prefix=prefix,
        search_mode=mode,
        port=0,
        metrics_port=-1,
    )


def bulk_load(settings: WatchlistSettings, data: np.ndarray) -> float:
    """Write one list of ``len(data)`` subjects straight into Milvus; returns rows per second."""
    store = MilvusStore(settings)
    store.open()
    try:
        store.put_list(ListRow(LIST, "benchmark", int(pb.WATCHLIST_KIND_WANTED), VERSION, now_ms()))
        c = store._c()
        started = time.perf_counter()
        insert_subjects(store, LIST, data, prefix="s", source="bench", created=now_ms(), chunk=LOAD_CHUNK)
        rate = len(data) / (time.perf_counter() - started)
        if not settings.is_lite:
            c.flush(store.templates)
            c.flush(store.subjects)
            wait_for_index(store)
        store.barrier()
        return rate
    finally:
        store.close()


INDEX_WAIT_S = 600.0
INDEX_STATE: dict[str, Any] = {}


def wait_for_index(store: MilvusStore, timeout: float | None = None) -> None:
    """Wait (bounded) until the server indexed every row; records how far it got and how long it took."""
    started = time.monotonic()
    deadline = started + (INDEX_WAIT_S if timeout is None else timeout)
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = store.index_info()
        if info.get("pending_index_rows", 0) == 0 and info.get("indexed_rows", 0) >= info.get(
            "total_rows", 0
        ):
            break
        time.sleep(2)
    INDEX_STATE.update(
        seconds=time.monotonic() - started,
        indexed=int(info.get("indexed_rows", 0)),
        total=int(info.get("total_rows", 0)),
    )


@contextlib.contextmanager
def service(settings: WatchlistSettings) -> Iterator[tuple[Any, float, WatchlistService]]:
    svc = WatchlistService(settings, load_settings(RuntimeSettings))
    started = time.perf_counter()
    try:
        with serve(svc, label="watchlist") as running, connect(running) as channel:
            warm = time.perf_counter() - started
            yield watchlist_pb2_grpc.WatchlistServiceStub(channel), warm, svc
    finally:
        svc.close()


@dataclass
class Started:
    """A service process once SERVING: its stub, seconds to SERVING, and its resident memory."""

    stub: Any
    seconds: float
    pid: int

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextlib.contextmanager
def service_process(uri: str, prefix: str, feed_url: str = "") -> Iterator[Started]:
    """The service as deployed: its own process (``python -m services.watchlist``), so the bench's
    client threads do not share its interpreter. Without ``feed_url`` it searches in Milvus; with one
    it keeps the in-process index, kept in step by that change feed (several-replica deployments)."""
    port = free_ports(1)[0]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MILVUS_URI": uri,
        "FACEGATE_WATCHLIST_COLLECTION_PREFIX": prefix,
        "FACEGATE_WATCHLIST_SEARCH_MODE": "memory" if feed_url else "milvus",
        "FACEGATE_WATCHLIST_CHANGE_FEED_URL": feed_url,
        "FACEGATE_WATCHLIST_PORT": str(port),
        "FACEGATE_WATCHLIST_METRICS_PORT": "-1",
    }
    cmd = [sys.executable, "-m", "services.watchlist"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 1800
        while not wait_until_serving(target, timeout=2.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the watchlist service did not start")
        with channel(target) as ch:
            yield Started(
                watchlist_pb2_grpc.WatchlistServiceStub(ch), time.perf_counter() - started, proc.pid
            )
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@contextlib.contextmanager
def milvus_paused(pid: int) -> Iterator[None]:
    """The Milvus server stopped (SIGSTOP) meanwhile: an in-process search never calls it, and on
    this 2-core machine its background work (index build, compaction) competes with the service."""
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(2)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def measure_gate(
    stub: Any, sets: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], threshold: float
) -> dict[str, dict[str, float]]:
    """Single-probe Search RPCs at a real threshold; recall@1 against the exact best (or both empty)."""
    out = {}
    for name, (probes, best, best_score) in sets.items():
        lat, agree = [], 0
        for q, v in enumerate(probes):
            r = pb.SearchRequest(
                probes=[common_pb2.Embedding(values=v.tolist(), model_version=VERSION)],
                watchlists=[LIST],
                top_k=10,
                threshold=threshold,
            )
            t = time.perf_counter()
            res = stub.Search(r)
            lat.append((time.perf_counter() - t) * 1000)
            cands = res.results[0].candidates
            if best_score[q] >= threshold:
                agree += bool(cands) and int(cands[0].subject_id[1:]) == int(best[q])
            else:
                agree += not cands
        out[name] = {"p50": statistics.median(lat), "p99": pct(lat, 99), "recall1": agree / len(probes)}
    return out


def measure_search(
    stub: Any, probes: np.ndarray, mates: np.ndarray, truth: list[set[int]], batched: np.ndarray
) -> dict[str, float]:
    def req(vectors: np.ndarray) -> pb.SearchRequest:
        return pb.SearchRequest(
            probes=[common_pb2.Embedding(values=v.tolist(), model_version=VERSION) for v in vectors],
            watchlists=[LIST],
            top_k=10,
            threshold=-1.0,
        )

    for v in probes[:5]:
        stub.Search(req(v[None]))  # warm the path
    lat, hits, mated = [], 0, 0
    for q, v in enumerate(probes):
        r = req(v[None])
        t = time.perf_counter()
        res = stub.Search(r)
        lat.append((time.perf_counter() - t) * 1000)
        ranked = [int(c.subject_id[1:]) for c in res.results[0].candidates]
        hits += len(set(ranked) & truth[q])
        mated += bool(ranked) and ranked[0] == mates[q]
    blat = []
    for lo in range(0, len(batched), BATCH):
        r = req(batched[lo : lo + BATCH])
        t = time.perf_counter()
        stub.Search(r)
        blat.append((time.perf_counter() - t) * 1000)
    return {
        "p50": statistics.median(lat),
        "p99": pct(lat, 99),
        "recall": hits / (10 * len(probes)),
        "mate": mated / len(probes),
        "batch_p50": statistics.median(blat),
        "batch_per_probe": statistics.median(blat) / BATCH,
    }


def measure_enrol(stub: Any, rng: np.random.Generator, count: int) -> float:
    name = "enrol_" + uuid.uuid4().hex[:8]
    stub.CreateWatchlist(pb.CreateWatchlistRequest(name=name, kind=pb.WATCHLIST_KIND_WANTED))
    vectors = unit_vectors(rng, count)
    started = time.perf_counter()
    for i, v in enumerate(vectors):
        stub.EnrollSubject(
            pb.EnrollSubjectRequest(
                watchlist=name,
                idempotency_key=f"bench-{i}",
                info=pb.SubjectInfo(category="bench"),
                templates=[
                    pb.TemplateInput(embedding=common_pb2.Embedding(values=v.tolist(), model_version=VERSION))
                ],
            )
        )
    return count / (time.perf_counter() - started)


def measure_consistency(uri: str, rng: np.random.Generator, rounds: int = 20) -> dict[str, Any]:
    """Read-your-writes on the server, per consistency level, and what each level costs per search."""
    store = MilvusStore(settings_for(uri, "milvus", "consistency"))
    store.open()
    c = store._c()
    try:
        base = unit_vectors(rng, 2000)
        c.insert(
            store.templates,
            [
                {
                    "template_id": f"b{i}",
                    "watchlist": LIST,
                    "subject_id": f"b{i}",
                    "embedding": v.tolist(),
                    "model_version": VERSION,
                    "quality": 1.0,
                    "source": "",
                    "created_at": 0,
                }
                for i, v in enumerate(base)
            ],
        )

        def top(v: np.ndarray, level: str) -> str:
            res = c.search(
                store.templates,
                data=[v.tolist()],
                limit=1,
                output_fields=["template_id"],
                search_params={"metric_type": "COSINE", "params": {"ef": 64}},
                consistency_level=level,
            )
            return res[0][0]["entity"]["template_id"] if res[0] else ""

        misses = {"insert, then Session search": 0, "delete, then Session search": 0}
        misses["delete + Strong barrier, then Session search"] = 0
        for i, v in enumerate(unit_vectors(rng, rounds)):
            c.insert(
                store.templates,
                [
                    {
                        "template_id": f"n{i}",
                        "watchlist": LIST,
                        "subject_id": f"n{i}",
                        "embedding": v.tolist(),
                        "model_version": VERSION,
                        "quality": 1.0,
                        "source": "",
                        "created_at": 0,
                    }
                ],
            )
            misses["insert, then Session search"] += top(v, "Session") != f"n{i}"
            c.delete(store.templates, ids=[f"n{i}"])
            stale = top(v, "Session") == f"n{i}"
            misses["delete, then Session search"] += stale
            store.barrier()
            misses["delete + Strong barrier, then Session search"] += top(v, "Session") == f"n{i}"
        latency = {}
        for level in ("Session", "Bounded", "Strong"):
            lat = []
            for v in base[:20]:
                t = time.perf_counter()
                top(v, level)
                lat.append((time.perf_counter() - t) * 1000)
            latency[level] = statistics.median(lat)
        t = time.perf_counter()
        for _ in range(5):
            store.barrier()
        return {
            "rounds": rounds,
            "misses": misses,
            "latency": latency,
            "barrier_ms": (time.perf_counter() - t) * 200,
        }
    finally:
        c.drop_collection(store.templates)
        store.close()


def measure_memory_index(data: np.ndarray, probes: np.ndarray, batched: np.ndarray) -> dict[str, float]:
    """The exact scan alone (a list below the sketch size), threshold -1: the worst case."""
    index = MemoryIndex(DIM, sketch_min_templates=len(data) + 1)
    index.load(LIST, [f"s{i}" for i in range(len(data))], [f"t{i}" for i in range(len(data))], data)
    for v in probes[:5]:
        index.search(v[None], [LIST], 10, -1.0, 20)
    lat = []
    for v in probes:
        t = time.perf_counter()
        index.search(v[None], [LIST], 10, -1.0, 20)
        lat.append((time.perf_counter() - t) * 1000)
    blat = []
    for lo in range(0, len(batched), BATCH):
        t = time.perf_counter()
        index.search(batched[lo : lo + BATCH], [LIST], 10, -1.0, 20)
        blat.append((time.perf_counter() - t) * 1000)
    return {
        "p50": statistics.median(lat),
        "p99": pct(lat, 99),
        "batch_per_probe": statistics.median(blat) / BATCH,
    }


def measure_sketch(
    kind: str, data: np.ndarray, rng: np.random.Generator, randoms: np.ndarray
) -> list[dict[str, Any]]:
    """Exact scan against the sign sketch on one list, at the two calibrated thresholds.

    Per probe set: p50/p99 ms, recall@1 against exact search (same first subject, or both empty),
    the share of every template at or above the threshold that the search returned (top_k 100, one
    template per subject, so every such template is returned when there are at most 100), and the
    sketch's candidates per probe."""
    n = len(data)
    subjects, tids = [f"s{i}" for i in range(n)], [f"t{i}" for i in range(n)]
    t = time.perf_counter()
    sketch = MemoryIndex(DIM, sketch_min_templates=1)
    sketch.load(LIST, subjects, tids, data)
    build = time.perf_counter() - t
    exact = MemoryIndex(DIM, sketch_min_templates=n + 1)
    exact.load(LIST, subjects, tids, data)
    sets = {"planted": planted_probes(rng, data, len(randoms)), "random": randoms}
    rows = []
    for threshold in (GATE_THRESHOLD, STRICT_THRESHOLD):
        for name, probes in sets.items():
            row: dict[str, Any] = {"kind": kind, "n": n, "threshold": threshold, "probes": name}
            for label, index in (("exact", exact), ("sketch", sketch)):
                lat, found = [], []
                for v in probes[:3]:
                    index.search(v[None], [LIST], 100, threshold, 1)
                for v in probes:
                    t = time.perf_counter()
                    hits = index.search(v[None], [LIST], 100, threshold, 1)[0]
                    lat.append((time.perf_counter() - t) * 1000)
                    found.append(hits)
                row[label] = {"p50": statistics.median(lat), "p99": pct(lat, 99)}
                row[label + "_hits"] = found
            agree, want, got = 0, 0, 0
            for e, k in zip(row.pop("exact_hits"), row.pop("sketch_hits"), strict=True):
                agree += (e[0].subject_id if e else None) == (k[0].subject_id if k else None)
                es, ks = {h.subject_id for h in e}, {h.subject_id for h in k}
                want += len(es)
                got += len(es & ks)
            fallbacks, sketch.exact_fallbacks = sketch.exact_fallbacks, 0
            radii = sketch.radii(threshold)
            arrays = sketch._lists[LIST]
            counts = []
            for v in probes[: min(50, len(probes))]:
                rows_ = sketch._candidates(sketch.encode(v[None])[0], arrays.codes, n, radii)
                counts.append(-1 if rows_ is None else len(rows_))
            row.update(
                recall1=agree / len(probes),
                found=(got / want) if want else 1.0,
                at_threshold=want / len(probes),
                candidates=statistics.median(counts),
                fallbacks=fallbacks,
            )
            rows.append(row)
    mem = sketch.memory_bytes() / n * 1_000_000 / 2**20
    arrays = exact._lists[LIST]
    exact_mem = (arrays.vectors.nbytes + arrays.live.nbytes) / n * 1_000_000 / 2**20
    for row in rows:
        row.update(build=build, mem=mem, exact_mem=exact_mem)
    return rows


def run(
    sizes: list[int],
    queries: int,
    slow_queries: int,
    enrolments: int,
    server_sizes: list[int],
    feed_url: str = "",
) -> dict[str, Any]:
    rng = np.random.default_rng(20261128)
    out: dict[str, Any] = {
        "rows": [],
        "gate": [],
        "enrol": {},
        "load": {},
        "size": {},
        "rebuild": {},
        "memory": {},
        "sketch": [],
        "index_mem": {},
        "server_index": {},
        "process": {},
    }
    work = Path(tempfile.mkdtemp(prefix="facegate-bench-wl-"))
    # Milvus Lite flushes its data files again at interpreter exit; registered first, this runs last.
    atexit.register(shutil.rmtree, work, True)
    try:
        datasets = {n: unit_vectors(rng, n) for n in sorted(set(sizes) | set(server_sizes))}
        made = {n: probes_for(rng, d, queries) for n, d in datasets.items()}
        probes = {n: p for n, (p, _m) in made.items()}
        mates = {n: m for n, (_p, m) in made.items()}
        batched = {n: probes_for(rng, d, BATCH * 5)[0] for n, d in datasets.items()}
        truth = {n: exact_top10(d, probes[n]) for n, d in datasets.items()}
        gate = {}
        for n, d in datasets.items():
            sets = {"planted": planted_probes(rng, d, queries), "random": unit_vectors(rng, queries)}
            gate[n] = {k: (v, *exact_best(d, v)) for k, v in sets.items()}
        for n in sizes:
            out["memory"][n] = measure_memory_index(datasets[n], probes[n], batched[n])
            out["sketch"] += measure_sketch("random", datasets[n], rng, unit_vectors(rng, queries))
            if n == max(sizes):
                basis = np.linalg.qr(rng.standard_normal((DIM, 34)))[0].astype(np.float32)
                faces = face_like(rng, n, basis)
                out["sketch"] += measure_sketch("face-like", faces, rng, face_like(rng, queries, basis))
                del faces
            uri = str(work / f"lite-{n}.db")
            out["load"][("lite", n)] = bulk_load(settings_for(uri, "memory", "bench"), datasets[n])
            out["size"][("lite", n)] = du(Path(uri))
            # Lite's own search is a Python pass over every row: not measured on the largest lists.
            modes = ("memory", "milvus") if n <= LITE_MILVUS_MAX else ("memory",)
            for mode in modes:
                q = queries if mode == "memory" else slow_queries
                b = BATCH * (5 if mode == "memory" else 1)
                with service(settings_for(uri, mode, "bench")) as (stub, warm, svc):
                    if mode == "memory":
                        out["rebuild"][n] = warm
                        assert svc.index is not None
                        out["index_mem"][n] = svc.index.memory_bytes()
                        out["gate"].append(("lite+memory", n, measure_gate(stub, gate[n], GATE_THRESHOLD)))
                    row = measure_search(stub, probes[n][:q], mates[n][:q], truth[n][:q], batched[n][:b])
                    out["rows"].append(("lite+" + mode, n, row))
                    if mode == "memory" and n == sizes[0]:
                        out["enrol"]["lite+memory"] = measure_enrol(stub, rng, enrolments)
        if server_sizes:
            with milvus_server(work / "server") as running:
                out["consistency"] = measure_consistency(running.uri, rng)
                for n in server_sizes:
                    prefix = f"bench{n}"
                    settings = settings_for(running.uri, "milvus", prefix)
                    before = du(work / "server")
                    INDEX_STATE.clear()
                    out["load"][("server", n)] = bulk_load(settings, datasets[n])
                    out["server_index"][n] = dict(INDEX_STATE)
                    out["size"][("server", n)] = du(work / "server") - before
                    for label, feed in (("server+milvus", ""), ("server+memory (feed)", feed_url)):
                        with service_process(running.uri, prefix, feed) as started:
                            stub = started.stub
                            out["gate"].append((label, n, measure_gate(stub, gate[n], GATE_THRESHOLD)))
                            row = measure_search(stub, probes[n], mates[n], truth[n], batched[n])
                            out["rows"].append((label, n, row))
                            if n == server_sizes[0]:
                                out["enrol"][label] = measure_enrol(stub, rng, enrolments)
                            if feed:
                                out["process"][n] = (started.seconds, started.rss_mib())
                                with milvus_paused(running.pid):
                                    gated = measure_gate(stub, gate[n], GATE_THRESHOLD)
                                out["gate"].append((label + ", Milvus paused", n, gated))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def render(out: dict[str, Any], args: argparse.Namespace, seconds: float) -> str:
    """The report, section by section; a section with no measurements in ``out`` is left out."""
    s = load_settings(WatchlistSettings, port=0, metrics_port=-1)
    lines = [
        *_render_service(out, args, seconds, s),
        *_render_in_process(out),
        *_render_gate(out),
        *_render_sketch(out, s),
        *_render_consistency(out),
        *_render_writes(out),
        "",
    ]
    return "\n".join(lines)


def _render_service(out: dict[str, Any], args: argparse.Namespace, seconds: float, s: Any) -> list[str]:
    """The run's setting and the Search RPC rows of every configuration."""
    lines = [
        "# Watchlist benchmark",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
        f"run took {seconds:.0f} s (`python -m bench watchlist`). Dimension {DIM}, one template per subject, "
        f"random unit vectors; probes = stored template + noise (cosine ~0.96). {args.queries} single-probe "
        f"Search RPCs per row ({args.slow_queries} for lite+milvus) over gRPC on loopback (top_k 10, "
        f"threshold -1 so every call returns 10 candidates: the worst case); batched = {BATCH} probes per "
        f"Search RPC (5 RPCs; 1 for lite+milvus). Recall@10 against exact numpy search; mate top-1 = the subject whose template the probe was made from is the first candidate. The machine was "
        f"shared with other work while this ran (load average {os.getloadavg()[0]:.1f} at the end).",
        "",
        "Index parameters: Milvus `"
        + json.dumps({"index_type": s.index_type, "metric": "COSINE", **s.index_params})
        + "`, search `"
        + json.dumps(s.search_params)
        + "` (ef raised to top_k x max_templates_per_subject = 200 when smaller, so one-per-subject"
        " de-duplication sees enough rows); in-process index: exact float32 inner product (numpy) below"
        f" {s.sketch_min_templates:,} templates, the sign sketch ({s.sketch_bits} bits, miss probability"
        f" {s.sketch_miss_probability:g}) with exact float32 scores from there on.",
        "",
        "## Search through the service (ms per Search RPC)",
        "",
        "| configuration | templates | p50 | p99 | recall@10 | mate top-1 | batched: ms per RPC of 32 "
        "| batched: ms per probe |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, n, m in out["rows"]:
        lines.append(
            f"| {name} | {n:,} | {m['p50']:.2f} | {m['p99']:.2f} | {m['recall']:.3f} | {m['mate']:.3f} | "
            f"{m['batch_p50']:.1f} | {m['batch_per_probe']:.2f} |"
        )
    lines += [
        "",
        "`lite+memory` is the default (`make run`): Milvus Lite is the system of record, the in-process exact",
        "index serves searches. `server+milvus` is the default whenever `MILVUS_URI` is a server; its",
        "rows run the service in its own process, as deployed (the Lite rows run it in the bench's).",
        "`server+memory (feed)` is a server deployment with the change feed (Redis): Milvus is the system",
        "of record, each replica searches its in-process index and applies the other replicas' writes",
        "before every call (one Redis round trip per Search is part of these numbers). Its gate row",
        '"Milvus paused" is measured with the co-located Milvus server stopped (SIGSTOP): that search',
        "path never calls Milvus, and on a cluster Milvus does not share the service's cores.",
        "",
    ]
    return lines


def _render_in_process(out: dict[str, Any]) -> list[str]:
    lines = [
        "## In-process index alone (no gRPC), ms",
        "",
        "| templates | p50 | p99 | batched: ms per probe |",
        "|---:|---:|---:|---:|",
    ]
    for n, m in out["memory"].items():
        lines.append(f"| {n:,} | {m['p50']:.2f} | {m['p99']:.2f} | {m['batch_per_probe']:.3f} |")
    return lines


def _render_gate(out: dict[str, Any]) -> list[str]:
    if not out["gate"]:
        return []
    lines = [
        "",
        f"## Gate screening through the service (threshold {GATE_THRESHOLD}, top_k 10, ms per Search RPC)",
        "",
        "Planted = a genuine-like match at cosine 0.55-0.9 to one template; random = no match "
        "(nothing reaches the threshold on random data). Recall@1 against exact search.",
        "",
        "| configuration | templates | planted p50 | planted p99 | planted recall@1 | random p50 | random p99 "
        "| random recall@1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, n, g in out["gate"]:
        a, b = g["planted"], g["random"]
        lines.append(
            f"| {name} | {n:,} | {a['p50']:.2f} | {a['p99']:.2f} | {a['recall1']:.3f} | {b['p50']:.2f} | "
            f"{b['p99']:.2f} | {b['recall1']:.3f} |"
        )
    return lines


def _render_sketch(out: dict[str, Any], s: Any) -> list[str]:
    if not out["sketch"]:
        return []
    lines = [
        "",
        "## In-process index alone: exact scan against the sign sketch (no gRPC)",
        "",
        "top_k 100, one template per subject. *found* = share of the templates at or above the "
        "threshold (exact) that the sketch search returned; *at thr* = such templates per probe; "
        "candidates = rows scored exactly per probe (median); fallbacks = probes that went to the exact "
        "scan because more than `sketch_max_candidates` rows were within the radius.",
        "",
        "| data | templates | threshold | probes | exact p50 / p99 | sketch p50 / p99 | recall@1 | found "
        "| at thr | candidates | fallbacks |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["sketch"]:
        lines.append(
            f"| {r['kind']} | {r['n']:,} | {r['threshold']} | {r['probes']} | "
            f"{r['exact']['p50']:.2f} / {r['exact']['p99']:.2f} | {r['sketch']['p50']:.2f} / "
            f"{r['sketch']['p99']:.2f} | {r['recall1']:.3f} | {r['found']:.4f} | {r['at_threshold']:.1f} | "
            f"{r['candidates']:,.0f} | {r['fallbacks']} |"
        )
    lines += [
        "",
        "| data | templates | sketch build s | MiB per 1M (vectors + sketch) | MiB per 1M (vectors only) |",
    ]
    lines.append("|---|---:|---:|---:|---:|")
    seen = set()
    for r in out["sketch"]:
        if (r["kind"], r["n"]) not in seen:
            seen.add((r["kind"], r["n"]))
            lines.append(
                f"| {r['kind']} | {r['n']:,} | {r['build']:.1f} | {r['mem']:.0f} | {r['exact_mem']:.0f} |"
            )
    radii = MemoryIndex(DIM, sketch_bits=s.sketch_bits, miss_probability=s.sketch_miss_probability).radii(
        GATE_THRESHOLD
    )
    lines.append(
        f"\nSketch: {s.sketch_bits} bits, miss probability {s.sketch_miss_probability:g} per template at the "
        f"threshold, radii at {GATE_THRESHOLD} after each 512-bit stage: {radii}; used by the "
        f"service for lists of {s.sketch_min_templates:,} templates or more."
    )
    return lines


def _render_consistency(out: dict[str, Any]) -> list[str]:
    cons = out.get("consistency")
    if not cons:
        return []
    lines = [
        "",
        f"## Consistency on the Milvus 2.3.5 server ({cons['rounds']} rounds, 2,000 rows)",
        "",
        "| write, then read | reads that did not reflect the write |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {v} of {cons['rounds']} |" for k, v in cons["misses"].items()]
    lines += ["", "| consistency level | median search ms (top-1, 2,000 rows) |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in cons["latency"].items()]
    lines.append(f"| Strong barrier query (run once after each delete) | {cons['barrier_ms']:.0f} |")
    return lines


def _render_writes(out: dict[str, Any]) -> list[str]:
    lines = ["", "## Writes, start-up and storage", "", "| measure | value |", "|---|---:|"]
    for name, rate in out["enrol"].items():
        lines.append(f"| EnrollSubject RPCs per second, one client, {name} | {rate:.1f} |")
    for (backend, n), rate in out["load"].items():
        lines.append(
            f"| bulk insert into Milvus ({backend}, {n:,} rows, chunks of {LOAD_CHUNK}), rows/s | {rate:,.0f} |"
        )
    for n, info in out["server_index"].items():
        if info:
            lines.append(
                f"| server HNSW index after bulk insert, {n:,} rows: rows indexed / total, "
                f"s waited (bound {INDEX_WAIT_S:.0f}) | {info['indexed']:,} / {info['total']:,}, "
                f"{info['seconds']:.0f} s |"
            )
    for n, b in out["index_mem"].items():
        lines.append(
            f"| in-process index arrays (vectors + sketch), {n:,} templates, MiB | {b / 2**20:.0f} |"
        )
    for n, (sec, rss) in out["process"].items():
        lines.append(
            f"| server+memory (feed) service process, {n:,} templates: s to SERVING (reads every template "
            f"from the server), RSS MiB | {sec:.0f} s, {rss:,.0f} MiB |"
        )
    for n, sec in out["rebuild"].items():
        lines.append(
            f"| service start incl. in-process index rebuild from Lite, {n:,} templates, s | {sec:.2f} |"
        )
    for (backend, n), size in out["size"].items():
        per = size / n * 100_000 / 2**20
        lines.append(f"| data size ({backend}, {n:,} templates + subjects), MiB per 100k | {per:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    global INDEX_WAIT_S
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 1M is measured on request: the Lite rebuild reads every template in one reply, which at 1M
    # exceeds the gRPC message limit (docs/watchlist.md), and a 2-core server needs over 10 min to index it.
    parser.add_argument("--sizes", default="10000,100000", help="Lite sizes (e.g. 10000,100000,1000000)")
    parser.add_argument(
        "--server-sizes", default="10000,100000", help="server sizes ('' to skip; e.g. 10000,100000,1000000)"
    )
    parser.add_argument(
        "--index-wait", type=float, default=600.0, help="most seconds to wait for the server's index"
    )
    parser.add_argument("--report", type=Path, default=REPORT, help="where to write the report")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--slow-queries", type=int, default=30, help="queries for Lite's own search")
    parser.add_argument("--enrolments", type=int, default=100)
    parser.add_argument(
        "--feed-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis of the change feed for the server+memory rows",
    )
    args = parser.parse_args(argv if argv is not None else [])
    INDEX_WAIT_S = args.index_wait
    started = time.perf_counter()
    out = run(
        [int(x) for x in args.sizes.split(",") if x],
        args.queries,
        args.slow_queries,
        args.enrolments,
        [int(x) for x in args.server_sizes.split(",") if x],
        args.feed_url,
    )
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(render(out, args, time.perf_counter() - started))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
