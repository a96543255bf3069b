"""Embedding benchmark: model throughput, RPC latency with and without dynamic batching, RSS,
cache-hit latency, and `facegate eval` wall time on the dev pairs → bench/results/embedding.md.

Run: `python -m bench embedding` (about 4 minutes on 2 shared cores). Numbers on a shared
machine are noisy; the report says which machine and when.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "embedding.md"
PAIRS = REPO.parent / "shared" / "data" / "faces" / "pairs.tsv"
LATENCY_SECONDS = 8.0
CLIENTS = (1, 4, 16)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_crops(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 160, 160, 3), dtype=np.uint8)


def throughput(model, flip: bool) -> dict[int, float]:
    """Faces per second of the compiled call alone, per batch size."""
    out = {}
    for batch in (1, 8, 32):
        crops = random_crops(batch, batch)
        model.embed(crops, flip=flip)  # trace/warm this shape
        reps = max(3, 48 // batch)
        started = time.perf_counter()
        for _ in range(reps):
            model.embed(crops, flip=flip)
        out[batch] = reps * batch / (time.perf_counter() - started)
    return out


def latency(model, *, batching: bool, clients: int) -> dict[str, float]:
    """Single-face Embed RPCs from ``clients`` threads for a fixed time, cache off."""
    from facegate.client import channel
    from facegate.v1 import embedding_pb2, embedding_pb2_grpc
    from services.embedding.config import EmbeddingSettings
    from services.embedding.crops import aligned_face
    from services.embedding.server import EmbeddingService
    from services.runtime.config import RuntimeSettings, load_settings
    from services.runtime.server import start_server

    settings = load_settings(EmbeddingSettings, port=0, metrics_port=-1, redis_url="", batching=batching)
    runtime = load_settings(RuntimeSettings)
    servicer = EmbeddingService(settings, runtime, model=model)
    server = start_server(label="bench", servicer=servicer, runtime=runtime, port=0)
    servicer.warmup()
    server.set_serving(True)
    samples: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + LATENCY_SECONDS
    requests = [
        embedding_pb2.EmbedRequest(faces=[aligned_face(c)]) for c in random_crops(clients * 4, 1000 + clients)
    ]

    def client(i: int) -> None:
        with channel(f"127.0.0.1:{server.port}") as ch:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
            mine: list[float] = []
            k = 0
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                stub.Embed(requests[(i * 4 + k) % len(requests)], timeout=120)
                mine.append(time.perf_counter() - started)
                k += 1
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    server.drain(0)
    servicer.close()
    ms = np.asarray(samples) * 1000
    return {
        "requests": len(samples),
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "faces_s": len(samples) / elapsed,
    }


def cache_hit_latency(model) -> dict[str, float]:
    """p50 of a single-face Embed answered from the real Redis at REDIS_URL (skipped if none)."""
    import redis

    from facegate.client import channel
    from facegate.v1 import embedding_pb2, embedding_pb2_grpc
    from services.embedding.config import EmbeddingSettings
    from services.embedding.crops import aligned_face
    from services.embedding.server import EmbeddingService
    from services.runtime.config import RuntimeSettings, load_settings
    from services.runtime.server import start_server

    prefix = f"facegate-bench:emb:{uuid.uuid4().hex[:8]}"
    settings = load_settings(EmbeddingSettings, port=0, metrics_port=-1, cache_prefix=prefix)
    if not settings.redis_url:
        return {}
    runtime = load_settings(RuntimeSettings)
    servicer = EmbeddingService(settings, runtime, model=model)
    server = start_server(label="bench-cache", servicer=servicer, runtime=runtime, port=0)
    servicer.warmup()
    server.set_serving(True)
    request = embedding_pb2.EmbedRequest(faces=[aligned_face(random_crops(1, 7)[0])])
    samples = []
    with channel(f"127.0.0.1:{server.port}") as ch:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
        stub.Embed(request, timeout=60)
        for _ in range(200):
            started = time.perf_counter()
            reply = stub.Embed(request, timeout=60)
            samples.append(time.perf_counter() - started)
    hit = bool(reply.cache_hits[0])
    server.drain(0)
    servicer.close()
    client = redis.Redis.from_url(settings.redis_url)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()
    if not hit:
        return {}
    ms = np.asarray(samples) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def eval_wall_time() -> dict | None:
    """`facegate eval` on the dev pairs in a fresh process (services started in-process)."""
    if not PAIRS.exists():
        return None
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "facegate", "eval", "--pairs", str(PAIRS), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        return {
            "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"
        }
    report = json.loads(proc.stdout)
    return {"process_s": wall, **report}


def main() -> None:
    from services.embedding.config import EmbeddingSettings
    from services.embedding.model import EmbeddingModel

    base_rss = rss_mb()
    import tensorflow as tf  # imported before the model so its RSS is measured on its own

    tf_rss = rss_mb()
    started = time.perf_counter()
    settings = EmbeddingSettings()
    model = EmbeddingModel(settings.models_dir, flip_fusion=settings.flip_fusion)
    load_s = time.perf_counter() - started
    model_name = f"{model.spec.model_id} {model.spec.model_version[:12]}…"
    runtime = model.runtime
    model_rss = rss_mb()
    warm_s = model.warmup((1, 32))
    print(f"model loaded in {load_s:.1f}s, warm-up {warm_s:.1f}s", flush=True)

    speed = {flip: throughput(model, flip) for flip in (False, True)}
    print("throughput", speed, flush=True)
    lat = {}
    for batching in (True, False):
        for clients in CLIENTS:
            lat[(batching, clients)] = latency(model, batching=batching, clients=clients)
            print("latency", batching, clients, lat[(batching, clients)], flush=True)
    cache = cache_hit_latency(model)
    after_rss = rss_mb()
    peak = peak_rss_mb()
    del model
    evaluation = eval_wall_time()
    print(
        "eval", {k: v for k, v in (evaluation or {}).items() if k in ("process_s", "wall_s", "cv_accuracy")}
    )

    lines = [
        "# Embedding service benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other work), "
        f"device {'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Produced by `python -m bench embedding`.",
        "",
        f"Model: {model_name} (runtime {runtime}). Load (file SHA-256 checked) {load_s:.2f} s; "
        f"warm-up (batch 1 and 32) {warm_s:.1f} s.",
        "",
        "## Throughput of the compiled call (faces/s)",
        "",
        "| batch | plain | flip fusion (crop + mirror) |",
        "|---|---|---|",
    ]
    for batch in (1, 8, 32):
        lines.append(f"| {batch} | {speed[False][batch]:.1f} | {speed[True][batch]:.1f} |")
    flip_note = "on" if settings.flip_fusion else "off"
    lines += [
        "",
        f"## Embed RPC latency, one face per request (flip fusion {flip_note}, cache off, {LATENCY_SECONDS:.0f} s each)",
        "",
        "| clients | batching | requests | p50 ms | p99 ms | faces/s |",
        "|---|---|---|---|---|---|",
    ]
    for (batching, clients), r in lat.items():
        on = f"on (max {settings.max_batch}, {settings.max_wait_ms:g} ms)" if batching else "off"
        lines.append(
            f"| {clients} | {on} | {r['requests']} | {r['p50']:.1f} | {r['p99']:.1f} | {r['faces_s']:.1f} |"
        )
    lines += ["", "## Cache", ""]
    if cache:
        lines.append(
            f"Embed answered from Redis (1 face): p50 {cache['p50']:.2f} ms, p99 {cache['p99']:.2f} ms."
        )
    else:
        lines.append("No Redis at REDIS_URL: cache latency not measured.")
    lines += [
        "",
        "## Memory (RSS of this process)",
        "",
        f"- Python + service imports: {base_rss:.0f} MB; TensorFlow imported: {tf_rss:.0f} MB",
        f"- FaceNet loaded: {model_rss:.0f} MB; after the runs above: {after_rss:.0f} MB; peak {peak:.0f} MB",
        "",
        "## `facegate eval` on the dev pairs (pairs.tsv, 600 pairs)",
        "",
    ]
    if evaluation is None:
        lines.append("dev pairs not found.")
    elif "error" in evaluation:
        lines.append(f"eval failed: {evaluation['error']}")
    else:
        lines += [
            f"- wall time of the process: {evaluation['process_s']:.0f} s (pipeline part {evaluation['wall_s']:.0f} s;"
            f" {evaluation['images']} images through detection → embedding over gRPC, 4 in flight)",
            f"- 10-fold CV accuracy {100 * evaluation['cv_accuracy']:.2f}%, "
            f"TAR@FAR1e-3 {100 * evaluation['tar_at_far']['0.001']['tar']:.2f}%, EER {100 * evaluation['eer']:.2f}%, "
            f"AUC {evaluation['auc']:.5f}, failures to detect {evaluation['failures_to_detect']['images']}",
        ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
