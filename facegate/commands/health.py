"""`facegate health`: grpc.health.v1 status of every service (or the targets given)."""

from __future__ import annotations

import argparse
import json

from facegate.client import health_check
from facegate.endpoints import DEFAULT_PORTS, SERVICE_NAMES, default_target


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("health", help="check grpc.health.v1 of the services")
    p.add_argument(
        "--target",
        action="append",
        metavar="LABEL=HOST:PORT",
        help="check only these (default: every service on its local default port)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.target:
        targets = dict(t.split("=", 1) for t in args.target)
    else:
        targets = {label: default_target(label) for label in DEFAULT_PORTS}
    results = {label: health_check(target, SERVICE_NAMES.get(label, "")) for label, target in targets.items()}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for label, status in results.items():
            print(f"{label:<10} {targets[label]:<22} {status}")
    return 0 if all(s == "SERVING" for s in results.values()) else 1
