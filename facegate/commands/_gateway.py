"""What every gateway command shares: where the gateway is, the key, printing, and errors."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from google.protobuf.json_format import MessageToDict

from facegate.errors import FacegateError
from facegate.gateway_client import API_KEY_ENV, GATEWAY, Decision, Gateway


def add_gateway_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default=GATEWAY, metavar="HOST:PORT", help=f"the gateway (default {GATEWAY})")
    p.add_argument("--key", help=f"API key (default: ${API_KEY_ENV})")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole call (default 60)")
    p.add_argument("--json", action="store_true", help="print JSON")


def gateway(args: argparse.Namespace) -> Gateway:
    return Gateway(args.target, key=args.key, timeout=args.timeout)


def handles_errors(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Exit 1 with ``error: CODE: message`` on a refused or failed call, never a traceback."""

    @wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except FacegateError as exc:
            print(f"error: {exc.code.name}: {exc.message}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 1

    return wrapper


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    print()


def message_dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def print_decision(decision: Decision) -> None:
    print(f"{decision.outcome:<7} {decision.instruction}".rstrip())
    for code, message in decision.reasons:
        print(f"  reason  {code}: {message}")
    for s in decision.scores:
        far = f" (FAR {s.target_far:g})" if s.target_far else ""
        print(f"  score   {s.name} {s.value:.4f}, threshold {s.threshold:.4f}{far}")
    print(f"  decision {decision.decision_id}  request {decision.request_id}")
    if decision.model_version:
        print(f"  model   {decision.model_version[:12]}…")
    if decision.timings_ms:
        print("  timings " + ", ".join(f"{k} {v:.0f} ms" for k, v in decision.timings_ms.items()))
