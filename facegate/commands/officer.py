"""`facegate identify|compare|detect`: the officer's tools, through the gateway (officer key)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from facegate.commands._gateway import (
    add_gateway_arguments,
    gateway,
    handles_errors,
    print_decision,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("identify", help="1:N: search a photo's face in the watchlists")
    p.add_argument("image", type=Path)
    p.add_argument("--watchlist", action="append", default=[], help="search only these lists (repeatable)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--threshold", type=float, help="minimum score (default: the calibrated one)")
    add_gateway_arguments(p)
    p.set_defaults(func=run_identify)

    p = sub.add_parser("compare", help="1:1: are the faces in two photos the same person?")
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    p.add_argument("--far", type=float, help="a calibrated operating point (default: the shipped one)")
    add_gateway_arguments(p)
    p.set_defaults(func=run_compare)

    p = sub.add_parser("detect", help="faces, landmarks and quality in a photo")
    p.add_argument("image", type=Path)
    add_gateway_arguments(p)
    p.set_defaults(func=run_detect)


@handles_errors
def run_identify(args: argparse.Namespace) -> int:
    with gateway(args) as gw:
        decision, candidates = gw.identify(
            args.image.read_bytes(), watchlists=args.watchlist, top_k=args.top_k, threshold=args.threshold
        )
    if args.json:
        print_json({"decision": decision.to_dict(), "candidates": [asdict(c) for c in candidates]})
        return 0
    print_decision(decision)
    for c in candidates:
        print(f"  candidate {c.subject_id} on {c.watchlist}: {c.score:.4f}")
    return 0


@handles_errors
def run_compare(args: argparse.Namespace) -> int:
    with gateway(args) as gw:
        decision = gw.compare(args.first.read_bytes(), args.second.read_bytes(), target_far=args.far)
    if args.json:
        print_json(decision.to_dict())
    else:
        print_decision(decision)
    return 0


@handles_errors
def run_detect(args: argparse.Namespace) -> int:
    with gateway(args) as gw:
        faces = gw.detect(args.image.read_bytes())
    if args.json:
        print_json([asdict(f) for f in faces])
        return 0
    print(f"{len(faces)} face(s)")
    for f in faces:
        x, y, w, h = f.box
        verdict = "ok" if f.quality_ok else "fails " + ", ".join(f.quality_failed)
        print(f"  box {x:.0f},{y:.0f} {w:.0f}x{h:.0f}  confidence {f.confidence:.3f}  quality {verdict}")
    return 0
