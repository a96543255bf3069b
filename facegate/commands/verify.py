"""`facegate verify`: the gate decision for a live capture, or for a camera stream, and a document
portrait (kiosk key)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facegate.commands._gateway import (
    add_gateway_arguments,
    gateway,
    handles_errors,
    print_decision,
    print_json,
)
from facegate.frame_source import FrameSourceError, frames_from, paced
from facegate.gateway_stream import FrameReport, StreamResult


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="gate decision: live capture vs document portrait, MRZ, watchlists")
    live = p.add_mutually_exclusive_group(required=True)
    live.add_argument("--live", type=Path, help="live capture (JPEG, PNG, WebP, JPEG 2000)")
    live.add_argument(
        "--live-video",
        type=Path,
        metavar="FILE_OR_DIR",
        help="a camera stream: a video file (OpenCV) or a folder of images in name order; the gateway "
        "gives feedback per frame and decides on the best one",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--portrait", type=Path, help="portrait image cut by the document reader")
    source.add_argument("--dg2", type=Path, help="DG2 bytes read from the chip")
    source.add_argument("--page", type=Path, help="photo-page scan (the portrait is found on it)")
    p.add_argument("--mrz", default="", help="MRZ text (lines separated by \\n), or @FILE")
    p.add_argument("--gate", default="", help="gate id (recorded in the audit trail)")
    p.add_argument("--watchlist", action="append", default=[], help="screen only these lists (repeatable)")
    p.add_argument("--request-id", help="a retry with the same id gets the same decision back")
    stream = p.add_argument_group("with --live-video")
    stream.add_argument("--fps", type=_positive, default=15.0, help="frames per second sent (default 15)")
    stream.add_argument(
        "--max-frames", type=int, default=0, help="most frames scored (default: the gateway's)"
    )
    stream.add_argument(
        "--time-budget", type=_positive, default=None, help="capture seconds (default: the gateway's)"
    )
    add_gateway_arguments(p)
    p.set_defaults(func=run)


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def _mrz(value: str) -> str:
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    return text.replace("\\n", "\n").strip()


@handles_errors
def run(args: argparse.Namespace) -> int:
    """Exit 0 when a decision came back (whatever it is), 1 when the call failed."""
    document = {
        "portrait": args.portrait.read_bytes() if args.portrait else None,
        "dg2": args.dg2.read_bytes() if args.dg2 else None,
        "page_scan": args.page.read_bytes() if args.page else None,
        "mrz": _mrz(args.mrz),
        "gate_id": args.gate,
        "watchlists": args.watchlist,
        "request_id": args.request_id,
    }
    if args.live_video is not None:
        return _stream(args, document)
    with gateway(args) as gw:
        decision = gw.verify_traveller(args.live.read_bytes(), **document)
    if args.json:
        print_json(decision.to_dict())
    else:
        print_decision(decision)
    return 0


def _stream(args: argparse.Namespace, document: dict) -> int:
    """The camera stream: feedback lines as they come (not with --json), then the decision."""
    try:
        frames = paced(frames_from(args.live_video), args.fps)
    except FrameSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with gateway(args) as gw:
        result = gw.verify_traveller_stream(
            frames,
            max_frames=args.max_frames,
            time_budget_s=args.time_budget or 0.0,
            on_feedback=None if args.json else print_feedback,
            **document,
        )
    if args.json:
        print_json(result.to_dict())
    else:
        print_stream_result(result)
    return 0


def print_feedback(report: FrameReport) -> None:
    failed = f"  ({', '.join(report.failed_checks)})" if report.failed_checks else ""
    print(f"frame {report.index:<4} {report.instruction}{failed}", flush=True)


def print_stream_result(result: StreamResult) -> None:
    print_decision(result.decision)
    chosen = result.chosen
    print(
        f"  frame   {chosen.index} chosen ({result.stop.lower().replace('_', ' ')}), quality {chosen.score:.2f}; "
        f"{result.frames_received} received, {result.frames_scored} scored, {result.frames_skipped} skipped"
    )
