"""The gRPC transport floor of a kiosk decision: no-op RPCs of a decision's sizes, hop by hop.

Issue 12 asks for service overhead <= 10% of a decision. Part of that overhead is the hops
themselves: a decision crosses five sequential gRPC hops (kiosk -> gateway -> docverify ->
detection x2 at once -> embedding, then gateway -> watchlist), and each service waits idle for
tens of milliseconds between its calls. This measures what those hops cost with no work behind
them: a server started by the runtime's own bootstrap (interceptor, metrics, health) in another
process answers a no-op ``Detect`` with a reply of the asked size, called through the client
layer's channel with the callee idle for ``gap_s`` before every call, as in a decision.

Two more columns say where that floor comes from: the same calls against a bare ``grpc.server``
(no interceptors, default options) through a plain channel, which is what gRPC itself costs, and
the runtime's server called back to back (no idle gap), which is what the idle wait before each
call adds (the processes' caches and threads go cold between a decision's calls).

``python -m bench.hop_floor`` prints the table for the bench's default sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

#: Metadata key carrying the reply size a no-op call asks for.
REPLY_BYTES_HEADER = "x-bench-reply-bytes"
#: A 160x160 RGB crop, as detection returns it and embedding receives it.
CROP_BYTES = 160 * 160 * 3


@dataclass(frozen=True)
class Hop:
    """One hop of a decision: its calls (request bytes, reply bytes), made at once when several."""

    label: str
    calls: tuple[tuple[int, int], ...]


def decision_hops(live_bytes: int, portrait_bytes: int, dg2_bytes: int) -> list[Hop]:
    """The hops of one kiosk decision with its images' sizes (replies: crops, templates, verdicts)."""
    traveller = live_bytes + dg2_bytes + 300  # live frame, DG2, MRZ and ids
    template = 128 * 4 + 64
    return [
        Hop("kiosk -> gateway (VerifyTraveller)", ((traveller, 2_000),)),
        Hop("gateway -> docverify (Verify)", ((traveller, 1_500),)),
        Hop(
            "docverify -> detection, live and portrait at once (Detect x2)",
            ((live_bytes, CROP_BYTES + 300), (portrait_bytes, CROP_BYTES + 300)),
        ),
        Hop("docverify -> embedding (Embed, 2 crops)", ((2 * CROP_BYTES + 100, 2 * template),)),
        Hop("gateway -> watchlist (Search)", ((template + 100, 300),)),
    ]


def _servicer() -> object:
    from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc

    class NoOp(detection_pb2_grpc.DetectionServiceServicer):
        """Answers Detect at once with a reply of the size the call asks for."""

        service_names = ("facegate.v1.DetectionService",)

        def register(self, server: object) -> None:
            detection_pb2_grpc.add_DetectionServiceServicer_to_server(self, server)

        def warmup(self) -> None:
            pass

        def close(self) -> None:
            pass

        def Detect(self, request: object, context: object) -> object:
            size = int(dict(context.invocation_metadata()).get(REPLY_BYTES_HEADER, "0"))
            face = detection_pb2.DetectedFace(aligned=common_pb2.AlignedFace(rgb=bytes(size)))
            return detection_pb2.DetectResponse(faces=[face])

    return NoOp()


def serve(port: int, bare: bool = False) -> None:
    """Run the no-op server on ``port`` until killed (the child process's whole life).

    ``bare``: a plain ``grpc.server`` with the runtime's worker count and nothing else on the call
    path (the health service is there only so the parent knows when it is up)."""
    from services.runtime.config import RuntimeSettings

    runtime = RuntimeSettings()
    if bare:
        from concurrent import futures

        import grpc
        from grpc_health.v1 import health, health_pb2_grpc

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=runtime.max_workers))
        _servicer().register(server)  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        server.wait_for_termination()
        return
    from services.runtime.server import start_server

    running = start_server(label="bench-noop", servicer=_servicer(), runtime=runtime, port=port)
    running.set_serving(True)
    running.server.wait_for_termination()


@contextlib.contextmanager
def noop_server(bare: bool = False) -> Iterator[str]:
    """A no-op server in its own process (the runtime's, or a bare one); yields its target once up."""
    from bench.bench_kiosk import free_port
    from facegate.client import wait_until_serving

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.hop_floor", "--serve", str(port), *(["--bare"] if bare else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        target = f"127.0.0.1:{port}"
        if not wait_until_serving(target, "" if bare else "facegate.v1.DetectionService", timeout=60):
            raise RuntimeError("the no-op server did not become SERVING")
        yield target
    finally:
        proc.kill()
        proc.wait()


def _at_once(stub: Any, requests: Sequence[tuple[Any, Any]]) -> None:
    """Start every call of a hop, then wait for all (as docverify's two Detect calls)."""
    futures = [stub.Detect.future(r, metadata=md, timeout=10) for r, md in requests]
    for future in futures:
        future.result()


def measure(
    target: str, hops: Sequence[Hop], calls: int = 100, gap_s: float = 0.03, *, plain_channel: bool = False
) -> list[dict]:
    """Per hop: p50 and mean ms of its calls (several at once wait for the slowest), callee idle
    ``gap_s`` before each; through the client layer, or a plain gRPC channel."""
    import grpc

    from bench.bench_kiosk import pct
    from facegate.client import DEFAULT_MAX_MESSAGE_BYTES, open_channel
    from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc

    if plain_channel:
        limit = DEFAULT_MAX_MESSAGE_BYTES
        options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
        channel = grpc.insecure_channel(target, options=options)
    else:
        channel = open_channel(target)
    stub = detection_pb2_grpc.DetectionServiceStub(channel)
    rows = []
    for hop in hops:
        requests = [
            (
                detection_pb2.DetectRequest(image=common_pb2.Image(data=bytes(req))),
                ((REPLY_BYTES_HEADER, str(rep)),),
            )
            for req, rep in hop.calls
        ]
        for _ in range(10):
            _at_once(stub, requests)
        times = []
        for _ in range(calls):
            time.sleep(gap_s)
            started = time.perf_counter()
            _at_once(stub, requests)
            times.append((time.perf_counter() - started) * 1000)
        rows.append(
            {
                "hop": hop.label,
                "request_kb": sum(req for req, _ in hop.calls) / 1000,
                "reply_kb": sum(rep for _, rep in hop.calls) / 1000,
                "p50": pct(times, 50),
                "mean": sum(times) / len(times),
            }
        )
    return rows


def floor(hops: Sequence[Hop], calls: int = 100, gap_s: float = 0.03) -> dict:
    """The floor of one decision: each hop measured, and their sum (the hops run one after another).

    Each row also carries ``p50_bare`` (a bare gRPC server and channel, same gap) and ``p50_busy``
    (the runtime's server, no gap)."""
    with noop_server() as target:
        rows = measure(target, hops, calls, gap_s)
        for row, busy in zip(rows, measure(target, hops, calls, 0.0), strict=True):
            row["p50_busy"] = busy["p50"]
    with noop_server(bare=True) as target:
        for row, bare in zip(rows, measure(target, hops, calls, gap_s, plain_channel=True), strict=True):
            row["p50_bare"] = bare["p50"]
    return {
        "rows": rows,
        "total_p50": sum(r["p50"] for r in rows),
        "total_bare": sum(r["p50_bare"] for r in rows),
        "total_busy": sum(r["p50_busy"] for r in rows),
        "gap_ms": gap_s * 1000,
        "calls": calls,
    }


def render(result: dict, decision_ms: float | None = None) -> list[str]:
    """The report's section: one row per hop, the sum, and its share of a decision."""
    lines = [
        "| hop (no-op calls of a decision's sizes) | request kB | reply kB | p50 ms | mean ms "
        "| bare gRPC, p50 ms | back to back, p50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['hop']} | {r['request_kb']:.1f} | {r['reply_kb']:.1f} | {r['p50']:.2f} | {r['mean']:.2f} "
            f"| {r['p50_bare']:.2f} | {r['p50_busy']:.2f} |"
        )
    total, bare, busy = result["total_p50"], result["total_bare"], result["total_busy"]
    lines += [
        f"| **all five, one after another** | | | **{total:.1f}** | | {bare:.1f} | {busy:.1f} |",
        "",
        f"Bare gRPC (a plain `grpc.server` and channel, nothing of facegate's on the call path, same "
        f"idle gap) costs {bare:.1f} ms for the five hops, so the runtime's interceptor, metrics and "
        f"the client layer add {total - bare:.1f} ms; called back to back, the same server answers the "
        f"five in {busy:.1f} ms, so {total - busy:.1f} ms is the price of the callee idling "
        f"{result['gap_ms']:.0f} ms before each call (its threads and caches go cold).",
    ]
    if decision_ms:
        budget = decision_ms * 0.10
        lines += [
            "",
            f"The hops alone take {total:.1f} ms, {100 * total / decision_ms:.0f}% of this run's mean "
            f"decision ({decision_ms:.1f} ms); the 10% bar leaves {budget:.1f} ms for all service "
            "overhead, decoding, alignment, quality, MRZ, DG2 and the audit fsync included.",
        ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hop_floor", description=__doc__.split("\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--gap-ms", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, bare=args.bare)
        return
    # The bench's typical sizes: a 1280x720 gate frame JPEG, a 150x150 portrait JPEG, its DG2.
    hops = decision_hops(live_bytes=56_000, portrait_bytes=11_000, dg2_bytes=11_200)
    print("\n".join(render(floor(hops, args.calls, args.gap_ms / 1000))))


if __name__ == "__main__":
    main()
