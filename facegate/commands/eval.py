"""`facegate eval`: accuracy of the full pipeline (detection → alignment → embedding) on a pairs file."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from facegate import evaluation
from facegate.evaluation_pipeline import (
    NO_FACE_SCORE,
    PipelineClient,
    ScoredPairs,
    connect,
    read_pairs,
    score_pairs,
    write_scores,
)
from facegate.launcher import local_services


def add_pipeline_arguments(p: argparse.ArgumentParser, pairs_required: bool = True) -> None:
    """Options shared by eval and calibrate: where the services are and how hard to drive them."""
    p.add_argument(
        "--pairs", type=Path, required=pairs_required, help="TSV with header left_path right_path same"
    )
    p.add_argument("--detection", metavar="HOST:PORT", help="detection service (default: start a local one)")
    p.add_argument("--embedding", metavar="HOST:PORT", help="embedding service (default: start a local one)")
    p.add_argument("--workers", type=int, default=4, help="concurrent images in flight (default 4)")
    p.add_argument(
        "--flip-fusion",
        choices=("on", "off"),
        help="local embedding service only: override FACEGATE_EMBEDDING_FLIP_FUSION",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: one on a terminal)")
    p.add_argument(
        "--margin",
        type=float,
        help="alignment margin to ask detection for instead of the model's (for tuning the ModelSpec)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure verification accuracy on a pairs TSV through the services")
    add_pipeline_arguments(p)
    p.add_argument("--scores-out", type=Path, help="write every pair with its score and status to this TSV")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


@contextlib.contextmanager
def pipeline(args: argparse.Namespace) -> Iterator[PipelineClient]:
    if bool(args.detection) != bool(args.embedding):
        raise SystemExit("give both --detection and --embedding, or neither (then both run locally)")
    if args.detection:
        if args.flip_fusion:
            raise SystemExit("--flip-fusion only applies to the local embedding service")
        with connect(args.detection, args.embedding, args.margin) as client:
            yield client
        return
    overrides = (
        {} if args.flip_fusion is None else {"FACEGATE_EMBEDDING_FLIP_FUSION": str(args.flip_fusion == "on")}
    )
    with (
        local_services(("detection", "embedding"), overrides) as targets,
        connect(targets["detection"], targets["embedding"], args.margin) as client,
    ):
        yield client


def run_pairs(args: argparse.Namespace) -> tuple[Any, ScoredPairs, PipelineClient | None, float]:
    pairs = read_pairs(args.pairs)
    started = time.perf_counter()
    with pipeline(args) as client:
        progress = False if args.no_progress else None
        images = client.embed_images(pairs.base, pairs.image_paths(), workers=args.workers, progress=progress)
        scored = score_pairs(pairs, images)
    return pairs, scored, client, time.perf_counter() - started


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else round(float(value), 6)


def build_report(pairs: Any, scored: ScoredPairs, spec: Any, wall_s: float) -> dict[str, Any]:
    same = pairs.same
    folds = evaluation.fold_ids(len(same), pairs.folds)
    summary = evaluation.summarise(scored.scores, same, folds)
    failed_images = sorted(p for p, r in scored.images.items() if r.status == "no_face")
    errored_images = sorted(p for p, r in scored.images.items() if r.status not in ("ok", "no_face"))
    report: dict[str, Any] = {
        "pairs_file": str(pairs.path),
        "pairs": summary.pairs,
        "genuine": summary.genuine,
        "impostor": summary.impostor,
        "images": len(scored.images),
        "model_id": spec.model_id,
        "model_version": spec.model_version,
        "flip_fusion": spec.flip_fusion,
        "device": spec.device,
        "failures_to_detect": {
            "images": len(failed_images),
            "pairs": sum(1 for s in scored.statuses if "no_face" in s),
            "paths": failed_images,
            "policy": f"a pair with a faceless image scores {NO_FACE_SCORE} (rejected: fail closed)",
        },
        "errors": {"images": len(errored_images), "paths": errored_images},
        "cv_accuracy": _finite(summary.cv_accuracy),
        "cv_accuracy_sem": _finite(summary.cv_accuracy_sem),
        "cv_folds": len(summary.cv_thresholds),
        "cv_threshold_mean": _finite(sum(summary.cv_thresholds) / len(summary.cv_thresholds)),
        "tar_at_far": {
            key: {
                "tar": _finite(point.tar),
                "threshold": _finite(point.threshold),
                "measured_far": _finite(point.measured_far),
                "impostors_above": point.impostors_above,
                "impostors": point.impostors,
                "resolved": point.resolved,
            }
            for key, point in summary.tar_at_far.items()
        },
        "eer": _finite(summary.eer),
        "eer_threshold": _finite(summary.eer_threshold),
        "auc": _finite(summary.auc),
        "genuine_mean": _finite(summary.genuine_mean),
        "impostor_mean": _finite(summary.impostor_mean),
        "wall_s": round(wall_s, 2),
    }
    report.update(shipped_threshold_report(scored, same, spec))
    return report


def shipped_threshold_report(scored: ScoredPairs, same: Any, spec: Any) -> dict[str, Any]:
    """Accuracy at the committed calibration for this model version (None when there is none)."""
    from facegate.errors import FailedPrecondition
    from facegate.thresholds import load_thresholds

    try:
        thresholds = load_thresholds(spec.model_version)
    except FailedPrecondition as exc:
        return {"threshold": None, "accuracy_at_threshold": None, "threshold_note": exc.message}
    point = thresholds.at_far()
    out: dict[str, Any] = {
        "threshold": {"value": point.threshold, "far": point.far, "calibrated_on": thresholds.calibrated_on},
        "accuracy_at_threshold": _finite(evaluation.accuracy_at(scored.scores, same, point.threshold)),
    }
    calibrated_flip = thresholds.extra.get("flip_fusion")
    if calibrated_flip is not None and calibrated_flip != spec.flip_fusion:
        out["threshold_note"] = (
            f"thresholds were calibrated with flip_fusion={calibrated_flip}, the service runs {spec.flip_fusion}"
        )
    return out


def print_text(report: dict[str, Any]) -> None:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}%"

    fail = report["failures_to_detect"]
    print(f"pairs file        {report['pairs_file']}")
    print(f"pairs             {report['pairs']} ({report['genuine']} genuine, {report['impostor']} impostor)")
    print(
        f"model             {report['model_id']} {report['model_version'][:12]}… flip={report['flip_fusion']}"
    )
    print(f"no face found     {fail['images']} of {report['images']} images ({fail['pairs']} pairs rejected)")
    for path in fail["paths"]:
        print(f"                    {path}")
    if report["errors"]["images"]:
        print(
            f"errors            {report['errors']['images']} images: {', '.join(report['errors']['paths'])}"
        )
    print(f"10-fold CV acc.   {pct(report['cv_accuracy'])} ± {pct(report['cv_accuracy_sem'])}")
    if report["threshold"] is not None:
        t = report["threshold"]
        print(
            f"shipped threshold {t['value']:.4f} (FAR {t['far']:g}): accuracy {pct(report['accuracy_at_threshold'])}"
        )
    else:
        print(f"shipped threshold none: {report['threshold_note']}")
    for far, point in report["tar_at_far"].items():
        note = (
            "" if point["resolved"] else f" (only {point['impostors']} impostors: FAR {far} not resolvable)"
        )
        print(f"TAR @ FAR {far:<7} {pct(point['tar'])} at {point['threshold']}{note}")
    print(f"EER               {pct(report['eer'])}")
    print(f"AUC               {report['auc']}")
    print(f"wall time         {report['wall_s']} s")


def run(args: argparse.Namespace) -> int:
    pairs, scored, client, wall_s = run_pairs(args)
    assert client is not None
    if args.scores_out:
        write_scores(args.scores_out, pairs, scored)
    report = build_report(pairs, scored, client.spec, wall_s)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_text(report)
    return 1 if report["errors"]["images"] else 0
