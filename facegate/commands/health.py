"""`facegate health`: grpc.health.v1 status of every service (or the targets given)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from facegate.client import health_check
from facegate.endpoints import DEFAULT_PORTS, SERVICE_NAMES, default_target
from facegate.launcher import STATUS_FILE, read_status


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("health", help="check grpc.health.v1 of the services")
    p.add_argument(
        "--target",
        action="append",
        metavar="LABEL=HOST:PORT",
        help="check only these (default: every service on its local default port)",
    )
    p.add_argument(
        "--var-dir",
        type=Path,
        default=None,
        help=f"where `make run` keeps {STATUS_FILE} (restart counts); default $FACEGATE_VAR_DIR or var",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.target:
        targets = dict(t.split("=", 1) for t in args.target)
    else:
        targets = {label: default_target(label) for label in DEFAULT_PORTS}
    results = {label: health_check(target, SERVICE_NAMES.get(label, "")) for label, target in targets.items()}
    launcher = read_status(args.var_dir or Path(os.environ.get("FACEGATE_VAR_DIR", "var")))
    supervised = (launcher or {}).get("services", {})
    if args.json:
        doc: dict = dict(results)
        if launcher is not None:  # `make run`'s supervisor: restarts per service, last exit
            doc["launcher"] = launcher
        print(json.dumps(doc, indent=2))
    else:
        for label, status in results.items():
            line = f"{label:<10} {targets[label]:<22} {status}"
            entry = supervised.get(label)
            if entry is not None:
                line += f"  restarts {entry.get('restarts', 0)}"
                if entry.get("last_exit_code") is not None:
                    line += f" (last exit {entry['last_exit_code']} at {entry.get('last_exit_at', '?')})"
            print(line)
    return 0 if all(s == "SERVING" for s in results.values()) else 1
