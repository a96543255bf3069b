"""`facegate verify`: the gate decision for a live capture and a document portrait (kiosk key)."""

from __future__ import annotations

import argparse
from pathlib import Path

from facegate.commands._gateway import (
    add_gateway_arguments,
    gateway,
    handles_errors,
    print_decision,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="gate decision: live capture vs document portrait, MRZ, watchlists")
    p.add_argument("--live", required=True, type=Path, help="live capture (JPEG, PNG, WebP, JPEG 2000)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--portrait", type=Path, help="portrait image cut by the document reader")
    source.add_argument("--dg2", type=Path, help="DG2 bytes read from the chip")
    source.add_argument("--page", type=Path, help="photo-page scan (the portrait is found on it)")
    p.add_argument("--mrz", default="", help="MRZ text (lines separated by \\n), or @FILE")
    p.add_argument("--gate", default="", help="gate id (recorded in the audit trail)")
    p.add_argument("--watchlist", action="append", default=[], help="screen only these lists (repeatable)")
    p.add_argument("--request-id", help="a retry with the same id gets the same decision back")
    add_gateway_arguments(p)
    p.set_defaults(func=run)


def _mrz(value: str) -> str:
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    return text.replace("\\n", "\n").strip()


@handles_errors
def run(args: argparse.Namespace) -> int:
    """Exit 0 when a decision came back (whatever it is), 1 when the call failed."""
    with gateway(args) as gw:
        decision = gw.verify_traveller(
            args.live.read_bytes(),
            portrait=args.portrait.read_bytes() if args.portrait else None,
            dg2=args.dg2.read_bytes() if args.dg2 else None,
            page_scan=args.page.read_bytes() if args.page else None,
            mrz=_mrz(args.mrz),
            gate_id=args.gate,
            watchlists=args.watchlist,
            request_id=args.request_id,
        )
    if args.json:
        print_json(decision.to_dict())
    else:
        print_decision(decision)
    return 0
