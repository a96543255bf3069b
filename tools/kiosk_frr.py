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

A real gate takes several frames as the traveller steps up (``VerifyTravellerStream``,
docs/stream.md). With ``--stream N`` each traveller is sent as a stream of up to N frames: the
left photo's gate frame first, then gate frames of the same person's other dev photos (never the
portrait photo), one at a time as the gateway scores them, and the gateway decides on the first
acceptable frame or the best one. Many dev identities have only one other photo, so the report
says how many travellers had more than one frame to offer.

Writes the raw results to ``var/kiosk_frr/<label>.json``; with ``--report`` it renders
``bench/results/kiosk_frr.md`` from the labels given (in order, e.g. ``before after``).
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import threading
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
    """One traveller at the gate: the live frames and the chip's DG2 of the passport photo."""

    genuine: bool
    frames: tuple[bytes, ...]  # gate frames of the traveller; frames[0] is the single-frame capture
    dg2: bytes
    portrait_photo: str = ""  # the dev photo the DG2 was made from (relative to the faces folder)

    @property
    def live(self) -> bytes:
        return self.frames[0]


def live_photos(left: str, right: str, count: int) -> list[Path]:
    """The traveller's photos for ``count`` frames: ``left`` first, then the same person's other
    dev photos in name order, never the portrait photo ``right``."""
    first = DATA / left
    others = sorted(p for p in first.parent.glob("*.jpg") if p != first and p != DATA / right)
    return [first, *others][:count]


def load_pairs(genuine: int, impostor: int, frames: int = 1) -> list[Pair]:
    """The first ``genuine`` same-person and ``impostor`` different-person pairs of pairs.tsv,
    each with up to ``frames`` live gate frames."""
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
        live = tuple(
            live_frame(np.asarray(Image.open(p).convert("RGB"))) for p in live_photos(left, right, frames)
        )
        out.append(Pair(is_genuine, live, dg2, right))
    return out


#: Width of the ICAO-style stand-in portrait (ISO/IEC 19794-5 token size is >= 240; chips hold ~300-420).
ICAO_WIDTH = 300


def icao_portraits(pairs: list[Pair], detection: str) -> tuple[list[Pair], int]:
    """The pairs with each DG2 holding an ICAO-style portrait of the photo's most central face (the
    press photo's subject: ``tools.docset.portrait``, as the document-style set renders them) instead
    of the whole press photo; (pairs, how many photos had no face to render and kept the photo)."""
    from facegate.v1 import detection_pb2
    from tests.docverify.dg2_builder import dg2_for_image
    from tools.docset.build import Detector, geometry
    from tools.docset.portrait import render

    det = Detector(detection)
    out, kept = [], 0
    for pair in pairs:
        photo = (DATA / pair.portrait_photo).read_bytes()
        face = det.face(photo, detection_pb2.SUBJECT_SELECTION_MOST_CENTRAL)
        if face is None:
            out.append(pair)
            kept += 1
            continue
        portrait = render(Image.open(io.BytesIO(photo)), geometry(face), ICAO_WIDTH, (232, 232, 228))
        buf = io.BytesIO()
        portrait.save(buf, format="JPEG", quality=90)
        dg2 = dg2_for_image(buf.getvalue(), "JPEG", portrait.width, portrait.height)
        out.append(Pair(pair.genuine, pair.frames, dg2, pair.portrait_photo))
    det.channel.close()
    return out, kept


def _names(enum: Any, values: Any, prefix: str) -> list[str]:
    return [enum.Name(v).removeprefix(prefix) for v in values]


def verify_one(stub: Any, gateway: Any, pair: Pair, mrz: str) -> dict[str, Any]:
    """Docverify's verdict with its reasons, and the gateway's decision, for one pair."""
    decision = gateway.verify_traveller(pair.live, dg2=pair.dg2, mrz=mrz, gate_id="kiosk-frr")
    return {**docverify_row(stub, pair.live, pair, mrz), "gate": decision.outcome, "frames_offered": 1}


def paced(frames: tuple[bytes, ...], scored: threading.Event, done: threading.Event):
    """Yield the frames one at a time, each after the gateway has scored the one before, as a
    traveller stepping up would give them (so none is skipped for arriving too fast)."""
    for index, frame in enumerate(frames):
        if index:
            scored.wait(timeout=60)
            scored.clear()
            if done.is_set():
                return
        yield frame


def verify_stream(stub: Any, gateway: Any, pair: Pair, mrz: str) -> dict[str, Any]:
    """The gateway's stream decision over the traveller's frames, and docverify's verdict with its
    reasons on the frame the gateway chose."""
    scored, done = threading.Event(), threading.Event()
    try:
        result = gateway.verify_traveller_stream(
            paced(pair.frames, scored, done),
            dg2=pair.dg2,
            mrz=mrz,
            gate_id="kiosk-frr",
            on_feedback=lambda _report: scored.set(),
        )
    finally:
        done.set()
        scored.set()
    chosen = pair.frames[result.chosen.index]
    return {
        **docverify_row(stub, chosen, pair, mrz),
        "gate": result.decision.outcome,
        "frames_offered": len(pair.frames),
        "frames_scored": result.frames_scored,
        "chosen_frame": result.chosen.index,
        "stop": result.stop,
    }


def docverify_row(stub: Any, live: bytes, pair: Pair, mrz: str) -> dict[str, Any]:
    """Docverify ``Verify`` on one live frame against the pair's DG2: outcome, reasons, qualities."""
    from facegate.api import document_request
    from facegate.v1 import common_pb2, docverify_pb2

    reply = stub.Verify(document_request(live, dg2=pair.dg2, mrz=mrz))
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
    }


def run(
    pairs: list[Pair], extra_env: dict[str, str], stream: bool = False, icao: bool = False
) -> list[dict[str, Any]]:
    """Every pair through a fresh stack (the working tree's code and settings); ``stream``: each
    traveller's frames through VerifyTravellerStream instead of the first one through VerifyTraveller;
    ``icao``: DG2s hold ICAO-style portraits of the press photos' subjects (:func:`icao_portraits`)."""
    import facegate
    from facegate.client import open_channel
    from facegate.v1 import docverify_pb2_grpc

    mrz = mrz_text()
    var = Path(tempfile.mkdtemp(prefix="facegate-kiosk-frr-"))
    with stack(var, extra_env) as s:
        if icao:
            pairs, kept = icao_portraits(pairs, s["targets"]["detection"])
            print(f"ICAO-style portraits: {len(pairs) - kept} rendered, {kept} photos without a face kept")
        channel = open_channel(s["targets"]["docverify"], budget_s=60)
        stub = docverify_pb2_grpc.DocVerifyServiceStub(channel)
        with facegate.Gateway(s["targets"]["gateway"], key=s["keys"]["FACEGATE_KIOSK_KEY"], timeout=60) as gw:
            one = verify_stream if stream else verify_one
            rows = [one(stub, gw, p, mrz) for p in pairs]
        channel.close()
    return rows


# ---- summary and report ---------------------------------------------------------------------------


def cause(row: dict[str, Any]) -> str:
    """Why a pair was not a MATCH, as one label (the first quality check, else the reason)."""
    if row["outcome"] == "MATCH":
        return "MATCH"
    if "QUALITY_TOO_LOW" in row["reasons"]:  # a second person (SINGLE_FACE) is MULTIPLE_FACES' own row
        return "INCONCLUSIVE live quality: " + "+".join(c for c in row["live_failed"] if c != "SINGLE_FACE")
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
        # A DG2 made from a press photo is not an ICAO portrait (see the report's notes).
        "portrait_refused": sum(cause(r).startswith("INCONCLUSIVE portrait") for r in refused),
        "max_similarity": max((r["similarity"] for r in side), default=0.0),
        "several_frames": sum(r.get("frames_offered", 1) > 1 for r in side),
        "frames_scored": sum(r.get("frames_scored", 1) for r in side),
        "accept_later_frame": sum(r.get("chosen_frame", 0) > 0 and r["gate"] == "ACCEPT" for r in side),
        "several_frames_refused": sum(r.get("frames_offered", 1) > 1 for r in refused),
    }


def _cell(counter: Counter, key: str) -> str:
    return str(counter.get(key, 0))


def _pct(count: int, n: int) -> str:
    return f"{100 * count / max(n, 1):.1f}%"


def _rate(count: int, n: int) -> str:
    return f"{_pct(count, n)} ({count}/{n})" if n else "–"


def capture(res: dict[str, Any]) -> str:
    """How the label's run captured each traveller, and what its DG2s held."""
    how = f"stream, up to {res['frames']} frames" if res.get("stream") else "1 frame (VerifyTraveller)"
    return how + (", DG2: ICAO-style portrait" if res.get("portrait") == "icao" else "")


def _genuine_rows(sums: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    s = list(sums.values())
    return [
        (
            "**false reject rate (gate not ACCEPT)**",
            [f"**{_pct(x['n'] - x['gate'].get('ACCEPT', 0), x['n'])}**" for x in s],
        ),
        ("failure to acquire (INCONCLUSIVE: a face or a quality check refused)", [str(x["fta"]) for x in s]),
        ("false non-match (compared, below the threshold)", [str(x["fnmr"]) for x in s]),
        ("not ACCEPT, yet the faces scored over the threshold", [str(x["refused_scored_match"]) for x in s]),
        (
            "false reject rate, the DG2 stand-in's own refusals left out (see notes)",
            [_pct(x["n"] - x["gate"].get("ACCEPT", 0) - x["portrait_refused"], x["n"]) for x in s],
        ),
        ("travellers with more than one frame to offer", [str(x["several_frames"]) for x in s]),
        (
            "false reject rate of those travellers",
            [_rate(x["several_frames_refused"], x["several_frames"]) for x in s],
        ),
        (
            "false reject rate of the travellers with one frame",
            [
                _rate(
                    x["n"] - x["gate"].get("ACCEPT", 0) - x["several_frames_refused"],
                    x["n"] - x["several_frames"],
                )
                for x in s
            ],
        ),
        ("ACCEPT on a later frame than the first", [str(x["accept_later_frame"]) for x in s]),
        ("frames scored, mean per traveller", [f"{x['frames_scored'] / max(x['n'], 1):.2f}" for x in s]),
    ]


def _table(sums: dict[str, dict[str, Any]], res: dict[str, dict[str, Any]], genuine: bool) -> list[str]:
    labels = list(sums)
    rows: list[tuple[str, list[str]]] = [
        ("capture", [capture(res[label]) for label in labels]),
        ("pairs", [str(sums[label]["n"]) for label in labels]),
    ]
    rows += [
        (f"gate {o}", [_cell(x["gate"], o) for x in sums.values()]) for o in ("ACCEPT", "RETRY", "REFER")
    ]
    if genuine:
        rows += _genuine_rows(sums)
    else:
        rows.append(("highest impostor similarity", [f"{x['max_similarity']:.3f}" for x in sums.values()]))
    for c in sorted({c for x in sums.values() for c in x["causes"]}):
        rows.append((c, [_cell(x["causes"], c) for x in sums.values()]))
    for c in sorted({c for x in sums.values() for c in x["live_checks"]}):
        rows.append((f"live check failed: {c} (any)", [_cell(x["live_checks"], c) for x in sums.values()]))
    head = "| | " + " | ".join(labels) + " |\n|---|" + "---:|" * len(labels)
    return [head] + [f"| {title} | " + " | ".join(cells) + " |" for title, cells in rows]


NOTES = [
    "- input: the first genuine and impostor pairs of `pairs.tsv`; live = 1280x720 gate frame "
    "(`tools.gate_frame`) of the left photo, portrait = the right photo as a chip DG2 (JPEG 90), valid MRZ",
    "- stack: the processes `make run` starts (`bench.bench_kiosk.stack`), default settings unless noted",
    "- gate = the gateway's decision with the kiosk key; causes = docverify `Verify`'s outcome and reasons "
    "for the same pair (for a stream: on the frame the gateway chose)",
    "- bar (issue 17, Frontex ABC practice): false rejects (failure to acquire + false non-match) <= 5% "
    "of genuine travellers, 0 impostor ACCEPT",
    "- 1 frame: a real gate retries (RETRY) with an instruction, which a still photo cannot follow, so a "
    "RETRY counts as a reject. Stream, up to N frames: the left photo's frame, then frames of the same "
    "person's other dev photos (never the portrait photo), each sent once the gateway scored the one "
    "before; a traveller with fewer photos offers fewer frames (row 'more than one frame to offer')",
    "- the DG2 stand-in: a DG2 holds an ICAO portrait the issuing state checked (frontal within 5 degrees, "
    "one person); here it holds an LFW press photo, some turned or showing a second, larger face. "
    "Portrait refusals are reported as measured, and the row that leaves them out says what the "
    "live side alone costs; the NO_MATCH pairs (Aldo_Paredes, Alejandro_Avila; similarity 0.05) are "
    "'portraits' whose largest face is another person (looked at), also the stand-in's. With "
    "`--portrait icao` the DG2 instead holds an ICAO-style portrait (token geometry, 300 px wide, eyes "
    "level, plain background: `tools.docset.portrait`, as the document-style set renders them) of the "
    "press photo's most central face, its subject; pose and expression stay the press photo's",
    "- machine: 2 shared CPU cores, no GPU, other work running alongside (load averages below); the "
    "numbers are decisions, not timings. What the rejects are: docs/detection.md, 'Kiosk false rejects'",
]


def _load(res: dict[str, Any]) -> str:
    return str(res.get("load", "?")).split("load average:")[-1].strip()


def render(results: dict[str, dict[str, Any]]) -> str:
    """The report: per label, the gate outcomes and docverify's causes, genuine and impostor."""
    labels = list(results)
    lines = [
        "# False rejects at the kiosk (issue 17)",
        "",
        "Generated by `python -m tools.kiosk_frr --report " + " ".join(labels) + "` from runs of "
        "`python -m tools.kiosk_frr --label NAME [--stream N]` (tools/kiosk_frr.py).",
        "",
        *NOTES,
    ]
    for label, res in results.items():
        lines.append(
            f"- {label}: {capture(res)}; git {res['git']}, {res['date']}, "
            f"settings: {res['settings'] or 'defaults'}; load average {_load(res)}"
        )
    for genuine in (True, False):
        sums = {label: summary(res["rows"], genuine) for label, res in results.items()}
        title = "Genuine pairs (same person)" if genuine else "Impostor pairs (different people)"
        lines += ["", f"## {title}", "", *_table(sums, results, genuine)]
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
    parser.add_argument(
        "--stream",
        type=int,
        default=0,
        metavar="N",
        help="send each traveller as a VerifyTravellerStream of up to N frames (0: one VerifyTraveller)",
    )
    parser.add_argument(
        "--portrait",
        choices=("photo", "icao"),
        default="photo",
        help="what the DG2 holds: the right photo as it is (a press photo), or an ICAO-style portrait "
        "of its most central face (what an issuing state puts on a chip)",
    )
    parser.add_argument("--report", nargs="*", metavar="LABEL", help="render the report from these runs")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    if args.label:
        started = time.perf_counter()
        env = dict(e.split("=", 1) for e in args.env)
        if args.stream:  # still photos, sent as they are scored: the camera's time budget is not measured
            env.setdefault("FACEGATE_GATEWAY_STREAM_TIME_BUDGET_S", "60")
        pairs = load_pairs(args.genuine, args.impostor, max(args.stream, 1))
        rows = run(pairs, env, stream=bool(args.stream), icao=args.portrait == "icao")
        res = {
            "portrait": args.portrait,
            "stream": bool(args.stream),
            "frames": max(args.stream, 1),
            "git": git_state(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "settings": ", ".join(f"{k}={v}" for k, v in env.items()),
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
