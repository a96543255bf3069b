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

import argparse
import contextlib
import datetime as dt
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "docverify.md"
DOCUMENTS = REPO.parent / "shared" / "data" / "documents"
SAMPLES = 30
WARMUP = 3
#: The TD3 specimen's MRZ (valid on the decision date the cases use).
MRZ = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10"


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
    """A DG2 as a chip holds it (the tests' ISO/IEC 19794-5 builder) around a JPEG or JPEG 2000."""
    from tests.docverify.dg2_builder import dg2_for_image

    out = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(portrait).save(out, format="JPEG", quality=90)
    else:
        Image.fromarray(portrait).save(
            out, format="JPEG2000", irreversible=True, quality_mode="rates", quality_layers=[10]
        )
    h, w = portrait.shape[:2]
    return dg2_for_image(out.getvalue(), fmt, w, h)


def _time(call, samples: int = SAMPLES) -> list[float]:
    for _ in range(WARMUP):
        call()
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


@dataclass
class Stack:
    """The three servers of a Verify, in this process, and what the report says about them."""

    docverify_target: str
    load_s: float
    provisional_thresholds: bool


@contextlib.contextmanager
def stack() -> Iterator[Stack]:
    """Detection, embedding (cache off) and docverify on loopback, wired as `make run` wires them.

    With no committed calibration for the default model, docverify gets a provisional 0.5
    threshold in a temporary directory (the report says so)."""
    from facegate.thresholds import CALIBRATION_DIR, OperatingPoint, Thresholds, path_for, write_thresholds
    from services.detection.config import DetectionSettings
    from services.detection.server import DetectionService
    from services.docverify.config import DocverifySettings
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
        running.append((server, servicer))
        servicer.warmup()
        server.set_serving(True)
        return f"127.0.0.1:{server.port}"

    def stop_all() -> None:
        for server, servicer in reversed(running):
            server.drain(0)
            servicer.close()

    with contextlib.ExitStack() as cleanup:
        calibration = CALIBRATION_DIR
        provisional = not path_for(DEFAULT.model_version, CALIBRATION_DIR).exists()
        if provisional:
            calibration = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
            point = OperatingPoint(1e-3, 0.5)
            write_thresholds(
                Thresholds(DEFAULT.model_id, DEFAULT.model_version, "cosine", 1e-3, (point,)), calibration
            )
        cleanup.callback(stop_all)  # runs first: the servers stop before the directory goes
        load_started = time.perf_counter()
        detection = start(
            "detection", DetectionService(load_settings(DetectionSettings, port=0, metrics_port=-1), runtime)
        )
        embedding = start(
            "embedding",
            EmbeddingService(
                load_settings(EmbeddingSettings, port=0, metrics_port=-1, redis_url=""), runtime
            ),
        )
        load_s = time.perf_counter() - load_started
        settings = load_settings(
            DocverifySettings,
            port=0,
            metrics_port=-1,
            detection_target=detection,
            embedding_target=embedding,
            calibration_dir=calibration,
        )
        yield Stack(start("docverify", DocVerifyService(settings, runtime)), load_s, provisional)


#: A report row: what was timed, its samples in ms, and the decimals the report shows.
Row = tuple[str, list[float], int]


def measure(target: str) -> tuple[list[Row], dict[str, tuple[str, float]]]:
    """Each Verify case's samples, then the in-process MRZ check and DG2 parse; and each case's
    outcome and similarity (the same person on every side, so a MATCH is expected)."""
    from facegate.client import channel
    from facegate.v1 import docverify_pb2_grpc

    outcomes: dict[str, tuple[str, float]] = {}
    rows: list[Row] = []
    with channel(target) as ch:
        cases, doc_portrait = _verify_cases(docverify_pb2_grpc.DocVerifyServiceStub(ch), outcomes)
        for name, call in cases:
            samples = _time(call)
            rows.append((name, samples, 0))
            p50, p99 = _percentile(samples, 50), _percentile(samples, 99)
            print(f"{name}: p50 {p50:.0f} ms p99 {p99:.0f} ms", flush=True)
    return rows + _local_steps(_dg2(doc_portrait, "JPEG2000")), outcomes


def _verify_cases(
    stub, outcomes: dict[str, tuple[str, float]]
) -> tuple[list[tuple[str, object]], np.ndarray]:
    """The Verify calls to time (each records its outcome), and the document portrait they use:
    the live frame holds the TD3 specimen's holder, every document side the same person's."""
    from facegate.v1 import common_pb2, docverify_pb2

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

    def verify_case(name: str, **portrait):
        request = docverify_pb2.VerifyRequest(
            live=common_pb2.Image(data=live), mrz=MRZ, decision_date="2010-06-01", **portrait
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
            (f"live 1280x720 + DG2 ({fmt} {w}x{h}, {len(data) // 1024} kB)", verify_case(fmt, dg2=data))
        )
    return cases, doc_portrait


def _local_steps(dg2_bytes: bytes) -> list[Row]:
    """The document checks docverify runs in process, timed alone (microseconds matter here)."""
    from services.docverify.dg2 import parse_dg2
    from services.docverify.mrz_check import check_mrz

    on = dt.date(2010, 6, 1)
    return [
        ("MRZ check alone (TD3, in process)", _time(lambda: check_mrz(MRZ, on), 2000), 3),
        ("DG2 parse alone (in process)", _time(lambda: parse_dg2(dg2_bytes, max_bytes=1 << 20), 2000), 3),
    ]


def render(
    rows: list[Row],
    outcomes: dict[str, tuple[str, float]],
    load_s: float,
    provisional: bool,
) -> str:
    """The report (RPC cases in whole ms, the in-process steps to the microsecond)."""
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
    for name, samples, digits in rows:
        p50, p99, mean = _percentile(samples, 50), _percentile(samples, 99), statistics.fmean(samples)
        lines.append(f"| {name} | {p50:.{digits}f} | {p99:.{digits}f} | {mean:.{digits}f} |")
    outcome_text = ", ".join(f"{k}: {v[0]} ({v[1]:.3f})" for k, v in outcomes.items())
    thresholds = "provisional 0.5 (no calibration committed yet)" if provisional else "committed calibration"
    lines += [
        "",
        f"Outcomes (same person, MRZ valid on 2010-06-01): {outcome_text}.",
        f"Detection + embedding warm-up (models loaded once): {load_s:.0f} s.",
        f"Thresholds: {thresholds}.",
        f"Load average at the end of the run (1/5/15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_docverify", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv if argv is not None else [])
    with stack() as running:
        rows, outcomes = measure(running.docverify_target)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, outcomes, running.load_s, running.provisional_thresholds))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
