"""`facegate audit verify|show`: check an audit log's hash chain offline, look up one decision.

Works on a copy of the log as well as the live one (reading never takes the writer's lock), so
an auditor can verify an exported file on another machine with only this package installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facegate.audit import AuditFormatError, default_log_path, find_record, verify_log


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="verify the audit trail's hash chain, look up a decision")
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    v = audit_sub.add_parser("verify", help="check every record's hash and order; name the first broken one")
    v.add_argument("file", nargs="?", type=Path, help=f"audit log (default: {default_log_path()})")
    v.add_argument("--json", action="store_true", help="print a JSON object")
    v.set_defaults(func=run_verify)

    s = audit_sub.add_parser("show", help="print the record of one decision id")
    s.add_argument("decision_id")
    s.add_argument("file", nargs="?", type=Path, help=f"audit log (default: {default_log_path()})")
    s.set_defaults(func=run_show)


def run_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the chain is intact, 1 when a record is broken, 2 when there is no readable log."""
    path = args.file or default_log_path()
    try:
        result = verify_log(path)
    except OSError as exc:
        print(f"error: cannot read audit log {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"file": str(path), **result.to_dict()}, indent=2))
    elif result.ok:
        print(f"OK: {result.records} records, last hash {result.last_hash}")
    else:
        print(
            f"BROKEN: {path} line {result.line} (seq {result.seq}, decision {result.decision_id}): "
            f"{result.reason}\n{result.records} records before it are intact "
            f"(last intact hash {result.last_hash})"
        )
    return 0 if result.ok else 1


def run_show(args: argparse.Namespace) -> int:
    """Exit 0 with the record as JSON, 1 when the id is not in the log, 2 when the log is unreadable."""
    path = args.file or default_log_path()
    try:
        record = find_record(path, args.decision_id)
    except (OSError, AuditFormatError) as exc:
        print(f"error: cannot read audit log {path}: {exc}", file=sys.stderr)
        return 2
    if record is None:
        print(f"no record of decision {args.decision_id} in {path}", file=sys.stderr)
        return 1
    print(json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False))
    return 0
