"""False rejects at the kiosk, end to end: ``python -m tools.kiosk_frr --label NAME``.

What a border operator measures for an ABC gate (Frontex's Best Practice Technical Guidelines for
ABC systems cap the false reject rate, failure-to-acquire plus false non-match, at about 5%):
of the travellers who are who their passport says, how many does the gate let through?

Input: the first ``--genuine`` genuine and ``--impostor`` impostor pairs of pairs.tsv. The live
capture is a 1280x720 gate frame of the left photo (``tools.gate_frame``), the portrait is the
right photo as the passport chip's DG2 (JPEG). Both go through the stack ``make run`` starts
(``bench.bench_kiosk.stack``: every service on free ports, a temporary var dir, cache off):
docverify ``Verify`` for the reasons (which quality check, which score), and the gateway's
``VerifyTraveller`` with the kiosk key for the gate's own answer (ACCEPT / RETRY / REFER).

Writes the raw results to ``var/kiosk_frr/<label>.json``; with ``--report`` it renders
``bench/results/kiosk_frr.md`` from the labels given (in order, e.g. ``before after``).
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.bench_kiosk import DATA, REPO, mrz_text, stack, uptime

RESULTS = REPO / "var" / "kiosk_frr"
REPORT = REPO / "bench" / "results" / "kiosk_frr.md"


@dataclass(frozen=True)
class Pair:
    """One traveller at the gate: the live frame and the chip's DG2 of the passport photo."""

    genuine: bool
    live: bytes
    dg2: bytes


def load_pairs(genuine: int, impostor: int) -> list[Pair]:
    """The first ``genuine`` same-person and ``impostor`` different-person pairs of pairs.tsv."""
    from tests.docverify.dg2_builder import dg2_for_image
    from tools.gate_frame import live_frame

    wanted = {True: genuine, False: impostor}
    out: list[Pair] = []
    for line in (DATA / "pairs.tsv").read_text().splitlines()[1:]:
        left, right, same = line.split("\t")[:3]
        is_genuine = same.strip() == "1"
        if wanted[is_genuine] <= 0:
            continue
        wanted[is_genuine] -= 1
        portrait = Image.open(DATA / right).convert("RGB")
        buf = io.BytesIO()
        portrait.save(buf, format="JPEG", quality=90)
        dg2 = dg2_for_image(buf.getvalue(), "JPEG", portrait.width, portrait.height)
        out.append(Pair(is_genuine, live_frame(np.asarray(Image.open(DATA / left).convert("RGB"))), dg2))
    return out


def _names(enum: Any, values: Any, prefix: str) -> list[str]:
    return [enum.Name(v).removeprefix(prefix) for v in values]


def verify_one(stub: Any, gateway: Any, pair: Pair, mrz: str) -> dict[str, Any]:
    """Docverify's verdict with its reasons, and the gateway's decision, for one pair."""
    from facegate.api import document_request
    from facegate.v1 import common_pb2, docverify_pb2

    reply = stub.Verify(document_request(pair.live, dg2=pair.dg2, mrz=mrz))
    decision = gateway.verify_traveller(pair.live, dg2=pair.dg2, mrz=mrz, gate_id="kiosk-frr")
    qc = common_pb2.QualityCheck
    return {
        "genuine": pair.genuine,
        "outcome": docverify_pb2.MatchOutcome.Name(reply.outcome).removeprefix("MATCH_OUTCOME_"),
        "reasons": _names(common_pb2.ReasonCode, [r.code for r in reply.reasons], "REASON_CODE_"),
        "messages": [r.message for r in reply.reasons],
        "similarity": reply.similarity,
        "threshold": reply.threshold,
        "live_failed": _names(qc, reply.live_quality.failed, "QUALITY_CHECK_"),
        "portrait_failed": _names(qc, reply.portrait_quality.failed, "QUALITY_CHECK_"),
        "live_measures": {
            qc.Name(m.check).removeprefix("QUALITY_CHECK_"): m.value for m in reply.live_quality.measures
        },
        "gate": decision.outcome,
    }


def run(pairs: list[Pair], extra_env: dict[str, str]) -> list[dict[str, Any]]:
    """Every pair through a fresh stack (the working tree's code and settings)."""
    import facegate
    from facegate.client import open_channel
    from facegate.v1 import docverify_pb2_grpc

    mrz = mrz_text()
    var = Path(tempfile.mkdtemp(prefix="facegate-kiosk-frr-"))
    with stack(var, extra_env) as s:
        channel = open_channel(s["targets"]["docverify"], budget_s=60)
        stub = docverify_pb2_grpc.DocVerifyServiceStub(channel)
        with facegate.Gateway(s["targets"]["gateway"], key=s["keys"]["FACEGATE_KIOSK_KEY"], timeout=60) as gw:
            rows = [verify_one(stub, gw, p, mrz) for p in pairs]
        channel.close()
    return rows


# ---- summary and report ---------------------------------------------------------------------------


def cause(row: dict[str, Any]) -> str:
    """Why a pair was not a MATCH, as one label (the first quality check, else the reason)."""
    if row["outcome"] == "MATCH":
        return "MATCH"
    if "QUALITY_TOO_LOW" in row["reasons"]:
        return "INCONCLUSIVE live quality: " + "+".join(row["live_failed"])
    if "PORTRAIT_QUALITY_TOO_LOW" in row["reasons"]:
        return "INCONCLUSIVE portrait quality: " + "+".join(row["portrait_failed"])
    blockers = [r for r in row["reasons"] if r not in ("MATCH", "NO_MATCH", "INCONCLUSIVE")]
    if row["outcome"] == "INCONCLUSIVE" and blockers:
        return "INCONCLUSIVE " + "+".join(blockers)
    return f"{row['outcome']} by score"


def summary(rows: list[dict[str, Any]], genuine: bool) -> dict[str, Any]:
    side = [r for r in rows if r["genuine"] == genuine]
    checks = Counter(c for r in side for c in r["live_failed"])
    refused = [r for r in side if r["gate"] != "ACCEPT"]
    return {
        "n": len(side),
        "gate": Counter(r["gate"] for r in side),
        "causes": Counter(cause(r) for r in side),
        "live_checks": checks,
        # Both faces were embedded even where a quality check refused the pair: did they match?
        "refused_scored_match": sum(0 < r["threshold"] <= r["similarity"] for r in refused),
        "fta": sum(cause(r).startswith("INCONCLUSIVE") for r in side),
        "fnmr": sum(cause(r) in ("NO_MATCH by score", "INCONCLUSIVE by score") for r in side),
        "max_similarity": max((r["similarity"] for r in side), default=0.0),
    }


def _cell(counter: Counter, key: str) -> str:
    return str(counter.get(key, 0))


def render(results: dict[str, dict[str, Any]]) -> str:
    """The report: per label, the gate outcomes and docverify's causes, genuine and impostor."""
    labels = list(results)
    head = "| | " + " | ".join(labels) + " |\n|---|" + "---:|" * len(labels)
    lines = [
        "# False rejects at the kiosk (issue 17)",
        "",
        "Generated by `python -m tools.kiosk_frr --report " + " ".join(labels) + "` from runs of "
        "`python -m tools.kiosk_frr --label NAME` (tools/kiosk_frr.py).",
        "",
        "- input: the first genuine and impostor pairs of `pairs.tsv`; live = 1280x720 gate frame "
        "(`tools.gate_frame`) of the left photo, portrait = the right photo as a chip DG2 (JPEG 90), valid MRZ",
        "- stack: the processes `make run` starts (`bench.bench_kiosk.stack`), default settings unless noted",
        "- gate = the gateway's `VerifyTraveller` with the kiosk key; causes = docverify `Verify`'s outcome "
        "and reasons for the same pair",
        "- bar (issue 17, Frontex ABC practice): false rejects (failure to acquire + false non-match) <= 5% "
        "of genuine travellers, 0 impostor ACCEPT",
        "- one frame per traveller: a real gate retries (RETRY) with an instruction, which these still photos "
        "cannot follow, so a RETRY here counts as a reject",
    ]
    for label, res in results.items():
        lines.append(f"- {label}: git {res['git']}, {res['date']}, settings: {res['settings'] or 'defaults'}")
    for genuine in (True, False):
        sums = {label: summary(res["rows"], genuine) for label, res in results.items()}
        title = "Genuine pairs (same person)" if genuine else "Impostor pairs (different people)"
        lines += ["", f"## {title}", "", head]
        lines.append("| pairs | " + " | ".join(str(s["n"]) for s in sums.values()) + " |")
        for outcome in ("ACCEPT", "RETRY", "REFER"):
            lines.append(
                f"| gate {outcome} | " + " | ".join(_cell(s["gate"], outcome) for s in sums.values()) + " |"
            )
        if genuine:
            lines.append(
                "| **false reject rate (gate not ACCEPT)** | "
                + " | ".join(
                    f"**{100 * (s['n'] - s['gate'].get('ACCEPT', 0)) / max(s['n'], 1):.1f}%**"
                    for s in sums.values()
                )
                + " |"
            )
            lines.append(
                "| failure to acquire (INCONCLUSIVE: a face or a quality check refused) | "
                + " | ".join(str(s["fta"]) for s in sums.values())
                + " |"
            )
            lines.append(
                "| false non-match (compared, below the threshold) | "
                + " | ".join(str(s["fnmr"]) for s in sums.values())
                + " |"
            )
            lines.append(
                "| not ACCEPT, yet the faces scored over the threshold | "
                + " | ".join(str(s["refused_scored_match"]) for s in sums.values())
                + " |"
            )
        else:
            lines.append(
                "| highest impostor similarity | "
                + " | ".join(f"{s['max_similarity']:.3f}" for s in sums.values())
                + " |"
            )
        causes = sorted({c for s in sums.values() for c in s["causes"]})
        for c in causes:
            lines.append(f"| {c} | " + " | ".join(_cell(s["causes"], c) for s in sums.values()) + " |")
        checks = sorted({c for s in sums.values() for c in s["live_checks"]})
        for c in checks:
            lines.append(
                f"| live check failed: {c} (any) | "
                + " | ".join(_cell(s["live_checks"], c) for s in sums.values())
                + " |"
            )
    return "\n".join(lines) + "\n"


def git_state() -> str:
    """HEAD, and whether the code the stack ran differed from it."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "services", "gateway", "facegate")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted service changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.kiosk_frr", description=__doc__.split("\n")[0])
    parser.add_argument("--label", help="run the pairs and save var/kiosk_frr/LABEL.json")
    parser.add_argument("--genuine", type=int, default=120)
    parser.add_argument("--impostor", type=int, default=120)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for every service")
    parser.add_argument("--report", nargs="*", metavar="LABEL", help="render the report from these runs")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    if args.label:
        started = time.perf_counter()
        rows = run(load_pairs(args.genuine, args.impostor), dict(e.split("=", 1) for e in args.env))
        res = {
            "git": git_state(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "settings": ", ".join(args.env),
            "load": uptime(),
            "seconds": time.perf_counter() - started,
            "rows": rows,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.label}.json").write_text(json.dumps(res, indent=1))
        print(render({args.label: res}))
    if args.report:
        results = {label: json.loads((RESULTS / f"{label}.json").read_text()) for label in args.report}
        args.out.write_text(render(results))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
