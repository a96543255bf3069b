"""``python -m tools.docset eval``: error rates per portrait source, through the real docverify service.

Every genuine pair is one docverify ``Verify`` call (the gate's path: live frame against the
document, with docverify's own live and portrait policies, quality verdicts and threshold). A Verify
call costs two detections and an embedding, so the ~28,000 impostor pairs per source are scored from
the same templates instead: the live template that Verify returns, and the document's template made
by the face pipeline with docverify's own searches (``services.docverify.portrait``: for a DG2 the
document profile, then the full search when it finds no face; the full search alone for a portrait
image or a page) on the very image docverify detects on (the DG2's inner image, the page as sent).
That this is Verify's score is checked, not assumed: for every genuine pair the dot product of the
two templates must equal Verify's similarity (the report gives the largest difference). Metrics are
``facegate.evaluation``'s, as in ``facegate eval``.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facegate import evaluation
from facegate.api import document_request
from facegate.client import open_channel
from facegate.errors import FacegateError, FaceRejected
from facegate.pipeline import FacePipeline
from facegate.thresholds import load_thresholds
from facegate.v1 import common_pb2, docverify_pb2, docverify_pb2_grpc
from services.docverify.config import DocverifySettings
from services.docverify.dg2 import parse_dg2
from services.docverify.portrait import portrait_searches, profile_falls_short
from services.docverify.quality import portrait_bounds
from services.docverify.thresholds import inter_eye_px
from services.runtime.config import load_settings
from services.runtime.images import HINT_OF_FORMAT
from tools.docset.build import DOCUMENTS, REPO, SOURCES
from tools.docset.pages import specimens_with_portrait
from tools.gate_frame import live_frame

SOURCE_NAMES = {
    "portrait.jpg": "portrait image",
    "dg2_jpeg.bin": "DG2 JPEG",
    "dg2_jp2.bin": "DG2 JPEG 2000",
    "page.jpg": "page scan",
}
FARS = (1e-3, 1e-4)
R = common_pb2.ReasonCode


@contextmanager
def services() -> Iterator[dict[str, str]]:
    """Detection, embedding and docverify as local processes (embedding cache off), wired together."""
    from facegate.launcher import local_services

    off = {"FACEGATE_EMBEDDING_REDIS_URL": "", "REDIS_URL": "", "FACEGATE_LOG_LEVEL": "WARNING"}
    with local_services(("detection", "embedding"), off) as inner:
        wiring = {
            **off,
            "FACEGATE_DOCVERIFY_DETECTION_TARGET": inner["detection"],
            "FACEGATE_DOCVERIFY_EMBEDDING_TARGET": inner["embedding"],
            "FACEGATE_DOCVERIFY_DOWNSTREAM_TIMEOUT_S": "120",
        }
        with local_services(("docverify",), wiring) as outer:
            yield {**inner, **outer}


def verify_request(live: bytes, source: str, data: bytes) -> docverify_pb2.VerifyRequest:
    if source.startswith("dg2"):
        return document_request(live, dg2=data)
    if source == "page.jpg":
        return document_request(live, page_scan=data)
    return document_request(live, portrait=data)


def document_image(source: str, data: bytes) -> common_pb2.Image:
    """The image docverify detects the portrait on (a DG2's inner image, else the bytes sent)."""
    if source.startswith("dg2"):
        face = parse_dg2(data, max_bytes=1 << 24).primary
        return common_pb2.Image(data=face.image, format_hint=HINT_OF_FORMAT[face.image_format])
    return common_pb2.Image(data=data)


def verify_row(stub: Any, live: bytes, source: str, data: bytes) -> dict[str, Any]:
    reply = stub.Verify(verify_request(live, source, data), timeout=300)
    template = list(reply.live_template.values)
    return {
        "outcome": docverify_pb2.MatchOutcome.Name(reply.outcome).removeprefix("MATCH_OUTCOME_"),
        "reasons": [R.Name(r.code).removeprefix("REASON_CODE_") for r in reply.reasons],
        "similarity": reply.similarity if reply.HasField("live_template") else None,
        "threshold": reply.threshold,
        "live_template": template or None,
    }


def document_template(
    pipeline: FacePipeline, settings: DocverifySettings, source: str, data: bytes
) -> tuple[list[float] | None, float | None]:
    """The document's template and its portrait's eye distance in pixels (the size band key)."""
    image = document_image(source, data)
    searches = portrait_searches(settings, image.data, dg2=source.startswith("dg2"))
    for policy in searches:
        try:
            template = pipeline.template(image, policy, source)
        except FaceRejected as exc:
            if exc.reason == FaceRejected.NO_FACE and policy is not searches[-1]:
                continue  # the profile found no large face: docverify searches the whole image
            return None, None
        except FacegateError:
            return None, None
        if policy is not searches[-1] and profile_falls_short(template.face, portrait_bounds(settings)):
            continue  # the profile's face fails a portrait check: docverify searches in full
        return template.vector.tolist(), inter_eye_px(template.face.quality)
    return None, None


def score_set(targets: dict[str, str], folder: Path, names: list[str], workers: int) -> dict[str, Any]:
    """Verify every genuine pair; template every document; the same for the specimen pages."""
    settings = load_settings(DocverifySettings)
    channel = open_channel(targets["docverify"], budget_s=600)
    stub = docverify_pb2_grpc.DocVerifyServiceStub(channel)
    jobs = [(n, s) for n in names for s in SOURCES]
    with FacePipeline.connect(targets["detection"], targets["embedding"], budget_s=600) as pipeline:

        def one(job: tuple[str, str]) -> dict[str, Any]:
            name, source = job
            data = (folder / name / source).read_bytes()
            row = verify_row(stub, (folder / name / "live.jpg").read_bytes(), source, data)
            row["document_template"], row["inter_eye_px"] = document_template(
                pipeline, settings, source, data
            )
            return {"identity": name, "source": source, **row}

        with ThreadPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(one, jobs))
        specimens = [specimen_row(stub, pipeline, settings, spec) for spec in specimens_with_portrait()]
        spec = pipeline.model_spec()
    channel.close()
    return {"model_version": spec.model_version, "rows": rows, "specimens": specimens}


def specimen_row(
    stub: Any, pipeline: FacePipeline, settings: DocverifySettings, spec: dict
) -> dict[str, Any]:
    """A specimen page: its portrait as a live frame (Verify's live template) and as a document."""
    page = (DOCUMENTS / spec["file"]).read_bytes()
    extract = stub.ExtractPortrait(
        docverify_pb2.ExtractPortraitRequest(page_scan=common_pb2.Image(data=page)), timeout=300
    )
    crop = np.asarray(Image.open(io.BytesIO(extract.portrait.data)).convert("RGB"))
    row = verify_row(stub, live_frame(crop), "page.jpg", page)
    template = document_template(pipeline, settings, "page.jpg", page)
    return {
        "file": spec["file"],
        "holder": spec["holder"],
        **row,
        **dict(zip(("document_template", "inter_eye_px"), template, strict=True)),
    }


# ---- metrics ----------------------------------------------------------------------------------------


def _vectors(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(matrix of templates, mask of rows that have one); missing ones are zero rows."""
    have = np.asarray([r[key] is not None for r in rows])
    dim = next((len(r[key]) for r in rows if r[key] is not None), 128)
    mat = np.asarray([r[key] if r[key] is not None else [0.0] * dim for r in rows], dtype=np.float64)
    return mat, have


def source_metrics(rows: list[dict], shipped: float) -> dict[str, Any]:
    """Genuine = Verify's similarity (not compared: -1, a reject); impostors = every other identity's document."""
    genuine = np.asarray([r["similarity"] if r["similarity"] is not None else -1.0 for r in rows])
    live, live_ok = _vectors(rows, "live_template")
    doc, doc_ok = _vectors(rows, "document_template")
    sims = live @ doc.T
    usable = live_ok[:, None] & doc_ok[None, :] & ~np.eye(len(rows), dtype=bool)
    impostor = sims[usable]
    docdoc = (doc @ doc.T)[np.triu(doc_ok[:, None] & doc_ok[None, :], k=1)]
    check = [
        abs(float(live[i] @ doc[i]) - r["similarity"])
        for i, r in enumerate(rows)
        if r["similarity"] is not None and live_ok[i] and doc_ok[i]
    ]
    scores = np.concatenate((genuine, impostor))
    same = np.concatenate((np.ones(len(genuine), bool), np.zeros(len(impostor), bool)))
    eer, eer_t = evaluation.equal_error_rate(scores, same)
    points = {f"{far:g}": evaluation.tar_at_far(genuine, impostor, far) for far in FARS}
    return {
        "identities": len(rows),
        "genuine": len(genuine),
        "not_compared": int(sum(r["similarity"] is None for r in rows)),
        "outcomes": dict(Counter(r["outcome"] for r in rows)),
        "blockers": dict(
            Counter(x for r in rows for x in r["reasons"] if x not in ("MATCH", "NO_MATCH", "INCONCLUSIVE"))
        ),
        "impostors": len(impostor),
        "tar_at_far": {
            k: {
                "tar": p.tar,
                "threshold": p.threshold,
                "impostors_above": p.impostors_above,
                "resolved": p.resolved,
            }
            for k, p in points.items()
        },
        "eer": eer,
        "eer_threshold": eer_t,
        "shipped_far": float(np.mean(impostor >= shipped)),
        "shipped_impostors_above": int(np.sum(impostor >= shipped)),
        "shipped_tar": float(np.mean(genuine >= shipped)),
        "genuine_median": float(np.median(genuine)),
        "impostor_p999": float(np.quantile(impostor, 0.999)),
        "impostor_max": float(impostor.max()),
        "doc_vs_doc": {
            "pairs": len(docdoc),
            "far_at_shipped": float(np.mean(docdoc >= shipped)),
            "above_shipped": int(np.sum(docdoc >= shipped)),
            "max": float(docdoc.max()),
            "p999": float(np.quantile(docdoc, 0.999)),
        },
        "verify_vs_templates_max_diff": max(check) if check else math.nan,
    }


def _scores(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(live x document, document x document) similarity matrices; -2 where a template is missing."""
    live, live_ok = _vectors(rows, "live_template")
    doc, doc_ok = _vectors(rows, "document_template")
    return (
        np.where(live_ok[:, None] & doc_ok[None, :], live @ doc.T, -2.0),
        np.where(doc_ok[:, None] & doc_ok[None, :], doc @ doc.T, -2.0),
    )


def lookalike_group(by_source: dict[str, list[dict]], threshold: float, size: int = 5) -> dict[str, Any]:
    """The ``size`` identities most often in accepted page-scan impostor pairs, and per source how
    many of their pairs among themselves the threshold accepts.

    LFW has no demographic labels, so this group is found from the scores: it shows how concentrated
    the false accepts are, not a demographic's FAR.
    """
    rows = by_source["page.jpg"]
    live_doc, _ = _scores(rows)
    np.fill_diagonal(live_doc, -2.0)
    hits = np.sum(live_doc >= threshold, axis=0) + np.sum(live_doc >= threshold, axis=1)
    group = sorted(np.argsort(-hits, kind="stable")[:size].tolist())
    inside = np.zeros(len(rows), dtype=bool)
    inside[group] = True
    out: dict[str, Any] = {"size": size}
    for source, source_rows in by_source.items():
        ld, dd = _scores(source_rows)
        off = ~np.eye(len(source_rows), dtype=bool)
        accepted = (ld >= threshold) & off
        out[SOURCE_NAMES[source]] = {
            "accepted_impostors": int(accepted.sum()),
            "with_a_group_member": int((accepted & (inside[:, None] | inside[None, :])).sum()),
            "within_live_vs_doc": f"{int(accepted[np.ix_(group, group)].sum())} of {size * (size - 1)}",
            "within_doc_vs_doc": f"{int(np.triu(dd[np.ix_(group, group)] >= threshold, 1).sum())} of "
            f"{size * (size - 1) // 2}",
        }
    return out


def specimen_metrics(specimens: list[dict], shipped: dict[str, float]) -> dict[str, Any]:
    """Cross-holder pairs of the specimen pages: live frame of one holder's portrait against another's page,
    and page against page; and the Utopia example person's own pages (genuine)."""
    live, live_ok = _vectors(specimens, "live_template")
    doc, doc_ok = _vectors(specimens, "document_template")
    pairs = []
    for i, a in enumerate(specimens):
        for j, b in enumerate(specimens):
            if i >= j or not (doc_ok[i] and doc_ok[j]):
                continue
            pairs.append(
                {
                    "a": a["file"],
                    "b": b["file"],
                    "same_holder": a["holder"] == b["holder"],
                    "doc_vs_doc": float(doc[i] @ doc[j]),
                    "live_a_vs_doc_b": float(live[i] @ doc[j]) if live_ok[i] else None,
                    "live_b_vs_doc_a": float(live[j] @ doc[i]) if live_ok[j] else None,
                }
            )
    cross = [p for p in pairs if not p["same_holder"]]
    best = [
        max(v for v in (p["doc_vs_doc"], p["live_a_vs_doc_b"], p["live_b_vs_doc_a"]) if v is not None)
        for p in cross
    ]
    return {
        "pages": len(specimens),
        "pages_without_template": [s["file"] for s, ok in zip(specimens, doc_ok, strict=True) if not ok],
        "cross_pairs": len(cross),
        "cross_above": {k: int(sum(b >= t for b in best)) for k, t in shipped.items()},
        "top_cross": sorted(
            cross,
            key=lambda p: (
                -max(
                    v for v in (p["doc_vs_doc"], p["live_a_vs_doc_b"], p["live_b_vs_doc_a"]) if v is not None
                )
            ),
        )[:8],
        "genuine": [p for p in pairs if p["same_holder"]],
    }


# ---- run and report ---------------------------------------------------------------------------------


def run(folder: Path, report: Path, workers: int) -> dict[str, Any]:
    """Score the set built in ``folder``; raw results to ``folder/eval.json``, the tables to ``report``."""
    manifest = json.loads((folder / "manifest.json").read_text())
    names = [e["identity"] for e in manifest["identities"] if "skipped" not in e]
    started = time.perf_counter()
    with services() as targets:
        raw = score_set(targets, folder, names, workers)
    calibration = load_thresholds(raw["model_version"])
    shipped = {f"{p.far:g}": p.threshold for p in calibration.points if p.far in FARS}
    result = {
        "seed": manifest["seed"],
        "identities": len(names),
        "skipped": len(manifest["identities"]) - len(names),
        "model_version": raw["model_version"],
        "shipped": shipped,
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(time.perf_counter() - started),
        "sources": {
            SOURCE_NAMES[s]: source_metrics([r for r in raw["rows"] if r["source"] == s], shipped["0.001"])
            for s in SOURCES
        },
        "lookalike_group": lookalike_group(
            {s: [r for r in raw["rows"] if r["source"] == s] for s in SOURCES}, shipped["0.001"]
        ),
        "specimens": specimen_metrics(raw["specimens"], shipped),
    }
    (folder / "eval.json").write_text(json.dumps({**result, "raw": raw}) + "\n")
    report.write_text(render(result))
    return result


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def render(res: dict[str, Any]) -> str:
    t3, t4 = res["shipped"]["0.001"], res["shipped"]["0.0001"]
    lines = [
        "# Document-style evaluation set: error rates per portrait source (issue 17)",
        "",
        f"Generated by `python -m tools.docset eval` (git {res['git']}, {res['date']}, {res['seconds']} s) on the set "
        f"`python -m tools.docset build --seed {res['seed']}` wrote: {res['identities']} dev identities "
        f"({res['skipped']} skipped). Method and limits: [docs/accuracy-documents.md](../../docs/accuracy-documents.md).",
        "",
        f"Shipped thresholds (LFW-calibrated): {t3:.4f} at FAR 1e-3 (what Verify uses), {t4:.4f} at FAR 1e-4.",
        "",
        "| source | genuine | impostors | TAR @ FAR 1e-3 (thr.) | TAR @ FAR 1e-4 (thr.) | EER | "
        "FAR at shipped 1e-3 threshold | TAR there | doc-vs-doc FAR there | Verify outcomes (genuine) |",
        "|---|---:|---:|---|---|---:|---|---:|---|---|",
    ]
    for name, m in res["sources"].items():
        cells = []
        for k in ("0.001", "0.0001"):
            p = m["tar_at_far"][k]
            note = "" if p["resolved"] else " (unresolved)"
            cells.append(f"{_pct(p['tar'])} ({p['threshold']:.3f}){note}")
        dd = m["doc_vs_doc"]
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(m["outcomes"].items()))
        lines.append(
            f"| {name} | {m['genuine']} | {m['impostors']} | {cells[0]} | {cells[1]} | {_pct(m['eer'])} | "
            f"{m['shipped_far']:.2e} ({m['shipped_impostors_above']}) | {_pct(m['shipped_tar'])} | "
            f"{dd['far_at_shipped']:.2e} ({dd['above_shipped']} of {dd['pairs']}) | {outcomes} |"
        )
    lines += [
        "",
        "| source | genuine median | impostor 99.9th pct. / max | doc-vs-doc 99.9th pct. / max | "
        "not compared | blocking reasons (genuine) | Verify vs templates, max diff |",
        "|---|---:|---|---|---:|---|---:|",
    ]
    for name, m in res["sources"].items():
        dd = m["doc_vs_doc"]
        blockers = ", ".join(f"{k} {v}" for k, v in sorted(m["blockers"].items())) or "none"
        lines.append(
            f"| {name} | {m['genuine_median']:.3f} | {m['impostor_p999']:.3f} / {m['impostor_max']:.3f} | "
            f"{dd['p999']:.3f} / {dd['max']:.3f} | {m['not_compared']} | {blockers} | {m['verify_vs_templates_max_diff']:.1e} |"
        )
    group = res["lookalike_group"]
    lines += [
        "",
        f"## Where the false accepts are (threshold {t3:.4f})",
        "",
        f"The {group['size']} identities most often in accepted page-scan impostor pairs (found from the scores: "
        "LFW has no demographic labels), and how the threshold treats their pairs among themselves:",
        "",
        "| source | accepted impostors | with one of them | among them, live vs doc | among them, doc vs doc |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in res["sources"]:
        g = group[name]
        lines.append(
            f"| {name} | {g['accepted_impostors']} | {g['with_a_group_member']} | {g['within_live_vs_doc']} | "
            f"{g['within_doc_vs_doc']} |"
        )
    sp = res["specimens"]
    lines += [
        "",
        f"## Specimen documents ({sp['pages']} pages with a portrait)",
        "",
        f"{sp['cross_pairs']} cross-holder page pairs; the pair's highest of doc-vs-doc and live-frame-vs-page "
        f"scores is at or over {t3:.4f} (FAR 1e-3) in {sp['cross_above']['0.001']} and over {t4:.4f} (FAR 1e-4) "
        f"in {sp['cross_above']['0.0001']}. Pages without a usable portrait template: "
        f"{', '.join(sp['pages_without_template']) or 'none'}.",
        "",
        "| page A | page B | doc vs doc | live A vs page B | live B vs page A |",
        "|---|---|---:|---:|---:|",
    ]
    for p in sp["top_cross"]:
        lines.append(
            f"| {p['a']} | {p['b']} | {p['doc_vs_doc']:.3f} | {_score(p['live_a_vs_doc_b'])} | {_score(p['live_b_vs_doc_a'])} |"
        )
    genuine = sp["genuine"]
    if genuine:
        lo = min(p["doc_vs_doc"] for p in genuine)
        hi = max(p["doc_vs_doc"] for p in genuine)
        lines += [
            "",
            f"Same holder (the Utopia example person, {len(genuine)} page pairs): doc vs doc {lo:.3f}-{hi:.3f}.",
        ]
    return "\n".join(lines) + "\n"


def _score(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
