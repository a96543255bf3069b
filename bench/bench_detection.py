"""Detection benchmark: images/s and per-image latency p50/p99 for 250x250, 640x480 and 1280x720
inputs, single (Detect) and batched (DetectBatch), and the service's peak RSS → bench/results/detection.md.

The service runs as its own process (``python -m services.detection``) on a free loopback port,
so the RSS is the service's alone. Run: ``python -m bench detection`` or
``python -m bench.bench_detection`` (about 2-3 minutes on 2 shared cores; numbers on a shared
machine are noisy, and the report says which machine and when).
"""

from __future__ import annotations

import io
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "detection.md"
FACES = REPO.parent / "shared" / "data" / "faces" / "images"
SIZES = ((250, 250), (640, 480), (1280, 720))
#: (single requests, batches) per size; batches hold BATCH images.
COUNTS = {(250, 250): (40, 6), (640, 480): (30, 4), (1280, 720): (20, 3)}
BATCH = 8
TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _frames(width: int, height: int, count: int) -> list[bytes]:
    """LFW faces scaled to ~40% of the frame height on a grey background (a kiosk-like framing)."""
    paths = sorted(FACES.glob("*/*.jpg"))[:: max(1, 1003 // count)][:count]
    out = []
    for path in paths:
        face = Image.open(path).convert("RGB")
        if (width, height) == (250, 250):
            frame = face.resize((250, 250), Image.BICUBIC)
        else:
            side = int(height * 0.8)
            frame = Image.new("RGB", (width, height), (110, 110, 110))
            frame.paste(face.resize((side, side), Image.BICUBIC), ((width - side) // 2, (height - side) // 2))
        buf = io.BytesIO()
        frame.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def main() -> None:
    from facegate.client import channel, wait_until_serving
    from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc

    port = _free_port()
    env = dict(
        os.environ,
        FACEGATE_DETECTION_PORT=str(port),
        FACEGATE_DETECTION_METRICS_PORT="-1",
        TF_CPP_MIN_LOG_LEVEL="2",
        FACEGATE_LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO),
    )
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.detection"], cwd=REPO, env=env, stderr=subprocess.DEVNULL
    )
    rows = []
    try:
        target = f"127.0.0.1:{port}"
        if not wait_until_serving(target, timeout=180):
            raise RuntimeError("detection service did not become SERVING")
        ready_s = time.perf_counter() - started
        idle_rss = _peak_rss_mb(proc.pid)
        with channel(target) as ch:
            stub = detection_pb2_grpc.DetectionServiceStub(ch)
            for width, height in SIZES:
                singles, batches = COUNTS[(width, height)]
                frames = _frames(width, height, max(singles, batches * BATCH))
                options = detection_pb2.DetectionOptions(return_crops=True)
                stub.Detect(
                    detection_pb2.DetectRequest(image=common_pb2.Image(data=frames[0]), options=options)
                )
                latencies, found = [], 0
                t0 = time.perf_counter()
                for data in frames[:singles]:
                    s = time.perf_counter()
                    reply = stub.Detect(
                        detection_pb2.DetectRequest(image=common_pb2.Image(data=data), options=options),
                        timeout=TIMEOUT,
                    )
                    latencies.append(time.perf_counter() - s)
                    found += reply.subject_index >= 0
                single_rate = singles / (time.perf_counter() - t0)
                rows.append(
                    (
                        f"{width}x{height}",
                        "single",
                        1,
                        single_rate,
                        _pct(latencies, 50),
                        _pct(latencies, 99),
                        found,
                        singles,
                    )
                )
                per_image, found = [], 0
                t0 = time.perf_counter()
                for b in range(batches):
                    chunk = frames[b * BATCH : (b + 1) * BATCH]
                    s = time.perf_counter()
                    reply = stub.DetectBatch(
                        detection_pb2.DetectBatchRequest(
                            images=[common_pb2.Image(data=d) for d in chunk], options=options
                        ),
                        timeout=TIMEOUT,
                    )
                    per_image.extend([(time.perf_counter() - s) / len(chunk)] * len(chunk))
                    found += sum(1 for item in reply.items if item.response.subject_index >= 0)
                batch_rate = batches * BATCH / (time.perf_counter() - t0)
                rows.append(
                    (
                        f"{width}x{height}",
                        f"batch of {BATCH}",
                        BATCH,
                        batch_rate,
                        _pct(per_image, 50),
                        _pct(per_image, 99),
                        found,
                        batches * BATCH,
                    )
                )
                print(rows[-2], rows[-1], flush=True)
        peak_rss = _peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    _write(rows, ready_s, idle_rss, peak_rss)


def _write(rows, ready_s: float, idle_rss: float, peak_rss: float) -> None:
    lines = [
        "# Detection benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other work; expect noise), "
        f"Python {platform.python_version()}; run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "The service ran as its own process (`python -m services.detection`, defaults: MTCNN on CPU, "
        "detection copy ≤ 1024 px, quality checks and 160x160 aligned crops for every face). The client "
        "sent JPEGs over loopback gRPC, one request at a time. Frames are LFW faces scaled to 80% of the "
        "frame height on a grey background (250x250: the face image itself, upscaled). Batched latency "
        "is the call time divided by the images in it.",
        "",
        "| input | mode | images/s | latency p50 (ms/image) | latency p99 (ms/image) | subject found |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for size, mode, _n, rate, p50, p99, found, total in rows:
        lines.append(f"| {size} | {mode} | {rate:.1f} | {p50:.0f} | {p99:.0f} | {found}/{total} |")
    lines += [
        "",
        f"- Start-up to SERVING (TensorFlow import + MTCNN load + warm-up pass): {ready_s:.1f} s.",
        f"- RSS of the service after warm-up: {idle_rss:.0f} MB; peak RSS over the run (VmHWM): {peak_rss:.0f} MB.",
        "- 1280x720 frames are detected on a 1024x576 copy (scale 0.8); crops and quality use the full frame.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
