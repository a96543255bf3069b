"""Docverify benchmark: latency of a full 1:1 Verify over real detection and embedding servers
→ bench/results/docverify.md.

Cases: live 1280x720 JPEG + photo-page scan (a small 398x271 page and the 1334x880 hi-res page),
live + DG2 (JPEG and JPEG 2000 portrait), and the local MRZ and DG2 parsing alone. All three
servers run in this process on loopback, exactly as `make run` wires them (gRPC between them);
the embedding cache is off so every request runs the model. Run: `python -m bench docverify`
(about 2-3 minutes on 2 shared cores). p99 of N samples is reported as measured (with N = 30 it is
close to the maximum); numbers on a shared machine are noisy.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "docverify.md"
DOCUMENTS = REPO.parent / "shared" / "data" / "documents"
SAMPLES = 30
WARMUP = 3


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _live_frame(portrait: np.ndarray) -> bytes:
    """A 1280x720 gate frame: the portrait scaled to 560 px high on a grey background."""
    img = Image.fromarray(portrait)
    img = img.resize((round(img.width * 560 / img.height), 560), Image.LANCZOS)
    canvas = Image.new("RGB", (1280, 720), (128, 128, 128))
    canvas.paste(img, ((1280 - img.width) // 2, 80))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=92)
    return out.getvalue()


def _dg2(portrait: np.ndarray, fmt: str) -> bytes:
    """A DG2 as a chip holds it (ICAO 9303 Part 10 / ISO 19794-5:2005), built by plain concatenation."""
    import struct

    out = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(portrait).save(out, format="JPEG", quality=90)
    else:
        Image.fromarray(portrait).save(
            out, format="JPEG2000", irreversible=True, quality_mode="rates", quality_layers=[10]
        )
    image = out.getvalue()

    def tlv(tag: int, value: bytes) -> bytes:
        n = len(value)
        length = (
            bytes([n])
            if n < 0x80
            else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        )
        return tag.to_bytes((tag.bit_length() + 7) // 8, "big") + length + value

    h, w = portrait.shape[:2]
    info = struct.pack(">HBBB3sH3s3s", 0, 0, 0, 0, b"\x00\x00\x00", 0, b"\x00\x00\x00", b"\x00\x00\x00")
    image_info = struct.pack(">BBHHBBHH", 1, 0 if fmt == "JPEG" else 1, w, h, 1, 2, 0, 0)
    body = info + image_info + image
    block = struct.pack(">I", 4 + len(body)) + body
    record = b"FAC\x00010\x00" + struct.pack(">IH", 14 + len(block), 1) + block
    header = tlv(0xA1, tlv(0x81, b"\x02") + tlv(0x87, b"\x01\x01") + tlv(0x88, b"\x00\x08"))
    return tlv(0x75, tlv(0x7F61, tlv(0x02, b"\x01") + tlv(0x7F60, header + tlv(0x5F2E, record))))


def _time(call, samples: int = SAMPLES) -> list[float]:
    for _ in range(WARMUP):
        call()
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    from facegate.client import channel
    from facegate.thresholds import (
        CALIBRATION_DIR,
        OperatingPoint,
        Thresholds,
        path_for,
        write_thresholds,
    )
    from facegate.v1 import common_pb2, docverify_pb2, docverify_pb2_grpc
    from services.detection.config import DetectionSettings
    from services.detection.server import DetectionService
    from services.docverify.config import DocverifySettings
    from services.docverify.dg2 import parse_dg2
    from services.docverify.mrz_check import check_mrz
    from services.docverify.server import DocVerifyService
    from services.embedding.config import EmbeddingSettings
    from services.embedding.server import EmbeddingService
    from services.runtime.config import RuntimeSettings, load_settings
    from services.runtime.model_spec import DEFAULT
    from services.runtime.server import start_server

    runtime = load_settings(RuntimeSettings)
    running = []

    def start(label, servicer):
        server = start_server(label=label, servicer=servicer, runtime=runtime, port=0, metrics_port=-1)
        servicer.warmup()
        server.set_serving(True)
        running.append((server, servicer))
        return server

    load_started = time.perf_counter()
    detection = start(
        "detection", DetectionService(load_settings(DetectionSettings, port=0, metrics_port=-1), runtime)
    )
    embedding = start(
        "embedding",
        EmbeddingService(load_settings(EmbeddingSettings, port=0, metrics_port=-1, redis_url=""), runtime),
    )
    load_s = time.perf_counter() - load_started
    calibration = CALIBRATION_DIR
    tmp = None
    if not path_for(DEFAULT.model_version, CALIBRATION_DIR).exists():
        tmp = tempfile.TemporaryDirectory()
        calibration = Path(tmp.name)
        write_thresholds(
            Thresholds(DEFAULT.model_id, DEFAULT.model_version, "cosine", 1e-3, (OperatingPoint(1e-3, 0.5),)),
            calibration,
        )
    docverify = start(
        "docverify",
        DocVerifyService(
            load_settings(
                DocverifySettings,
                port=0,
                metrics_port=-1,
                detection_target=f"127.0.0.1:{detection.port}",
                embedding_target=f"127.0.0.1:{embedding.port}",
                calibration_dir=calibration,
            ),
            runtime,
        ),
    )
    rows: list[tuple[str, list[float], str]] = []
    try:
        with channel(f"127.0.0.1:{docverify.port}") as ch:
            stub = docverify_pb2_grpc.DocVerifyServiceStub(ch)
            td3 = (DOCUMENTS / "passports_ICAO_Utopia_TD3_hires.jpg").read_bytes()
            td2 = (DOCUMENTS / "other_ICAO_Utopia_TD2_hires.jpg").read_bytes()
            small = (DOCUMENTS / "passports_ICAO_Example.png").read_bytes()

            def portrait_of(data: bytes) -> np.ndarray:
                reply = stub.ExtractPortrait(
                    docverify_pb2.ExtractPortraitRequest(page_scan=common_pb2.Image(data=data))
                )
                return np.asarray(Image.open(io.BytesIO(reply.portrait.data)).convert("RGB"))

            live = _live_frame(portrait_of(td3))
            doc_portrait = portrait_of(td2)
            mrz = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10"
            outcomes = {}

            def verify_case(name: str, **portrait):
                request = docverify_pb2.VerifyRequest(
                    live=common_pb2.Image(data=live), mrz=mrz, decision_date="2010-06-01", **portrait
                )

                def call():
                    reply = stub.Verify(request, timeout=60)
                    outcomes[name] = (docverify_pb2.MatchOutcome.Name(reply.outcome), reply.similarity)

                return call

            cases = [
                (
                    "live 1280x720 + page scan 398x271 (PNG)",
                    verify_case("small", page_scan=common_pb2.Image(data=small)),
                ),
                (
                    "live 1280x720 + page scan 1334x880 (JPEG)",
                    verify_case("hires", page_scan=common_pb2.Image(data=td3)),
                ),
            ]
            h, w = doc_portrait.shape[:2]
            for fmt in ("JPEG", "JPEG2000"):
                data = _dg2(doc_portrait, fmt)
                cases.append(
                    (
                        f"live 1280x720 + DG2 ({fmt} {w}x{h}, {len(data) // 1024} kB)",
                        verify_case(fmt, dg2=data),
                    )
                )
            for name, call in cases:
                samples = _time(call)
                key = name
                rows.append((key, samples, ""))
                print(
                    f"{name}: p50 {_percentile(samples, 50):.0f} ms p99 {_percentile(samples, 99):.0f} ms",
                    flush=True,
                )
            dg2_bytes = _dg2(doc_portrait, "JPEG2000")
            on = dt.date(2010, 6, 1)
            local = [
                ("MRZ check alone (TD3, in process)", _time(lambda: check_mrz(mrz, on), 2000)),
                (
                    "DG2 parse alone (in process)",
                    _time(lambda: parse_dg2(dg2_bytes, max_bytes=1 << 20), 2000),
                ),
            ]
            outcome_text = ", ".join(f"{k}: {v[0]} ({v[1]:.3f})" for k, v in outcomes.items())
    finally:
        for server, servicer in reversed(running):
            server.drain(0)
            servicer.close()
        if tmp is not None:
            tmp.cleanup()

    lines = [
        "# Docverify benchmark",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} ({os.cpu_count()} CPUs, shared with other "
        f"engineers' jobs), Python {platform.python_version()}. `python -m bench docverify`.",
        "",
        "Full `Verify` RPC, client to docverify to detection (two Detect calls, overlapped) and embedding "
        "(one Embed call), all real servers on loopback in one process; MTCNN and FaceNet on CPU; embedding "
        f"cache off; MRZ checked on every call. {SAMPLES} samples per case after {WARMUP} warm-up calls, "
        "one client at a time.",
        "",
        "| case | p50 ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|",
    ]
    for name, samples, _ in rows:
        lines.append(
            f"| {name} | {_percentile(samples, 50):.0f} | {_percentile(samples, 99):.0f} | {statistics.fmean(samples):.0f} |"
        )
    for name, samples in local:
        lines.append(
            f"| {name} | {_percentile(samples, 50):.3f} | {_percentile(samples, 99):.3f} | {statistics.fmean(samples):.3f} |"
        )
    lines += [
        "",
        f"Outcomes (same person, MRZ valid on 2010-06-01): {outcome_text}.",
        f"Detection + embedding warm-up (models loaded once): {load_s:.0f} s.",
        f"Thresholds: {'committed calibration' if tmp is None else 'provisional 0.5 (no calibration committed yet)'}.",
        f"Load average at the end of the run (1/5/15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
