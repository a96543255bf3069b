"""``python -m tools.docset build|eval|thresholds``: the document-style evaluation set of issue 17."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tools.docset.build import REPO, build, identities

DEFAULT_OUT = REPO / "var" / "docset"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.docset", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="render the set under --out (deterministic for --seed)")
    b.add_argument("--out", type=Path, default=DEFAULT_OUT)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--limit", type=int, help="only the first N identities (sorted by name)")
    b.add_argument("--detection", metavar="HOST:PORT", help="detection service (default: start a local one)")
    e = sub.add_parser("eval", help="score the set through docverify and write the report")
    e.add_argument("--set", type=Path, default=DEFAULT_OUT, dest="folder")
    e.add_argument("--workers", type=int, default=3)
    e.add_argument("--report", type=Path, default=REPO / "bench" / "results" / "docset.md")
    t = sub.add_parser(
        "thresholds", help="report the per-source thresholds (after `facegate calibrate --documents`)"
    )
    t.add_argument("--sets", type=Path, nargs="+", default=[DEFAULT_OUT], help="scored set folders")
    t.add_argument("--report", type=Path, default=REPO / "bench" / "results" / "docset_thresholds.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.command == "build":
        names = identities()[: args.limit] if args.limit else identities()
        manifest = build(args.out, args.seed, names, args.detection)
        done = sum(1 for e in manifest["identities"] if "skipped" not in e)
        print(
            f"wrote {done} identities ({len(names) - done} skipped) to {args.out} "
            f"in {time.perf_counter() - started:.0f} s"
        )
        return 0
    if args.command == "thresholds":
        from tools.docset.thresholds_report import run as report

        report(args.sets, args.report)
        print(f"wrote {args.report}")
        return 0
    from tools.docset.evaluate import run

    run(args.folder, args.report, args.workers)
    print(f"wrote {args.report} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
