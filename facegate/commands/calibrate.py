"""`facegate calibrate`: thresholds for the loaded model version, written where the services load them.

A threshold for FAR 1e-3 needs well over 1,000 impostor comparisons to mean anything; a pairs
file with a few hundred impostor pairs cannot resolve it. By default the impostors are therefore
every cross-identity pair among the file's images (identity = the image's folder, as in LFW):
~400,000 comparisons for the dev constructed pairs. Genuine pairs are the file's own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from facegate import evaluation
from facegate.commands.eval import add_pipeline_arguments, run_pairs

EXTRA_FARS = (1e-4, 1e-3, 1e-2)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="calibrate decision thresholds for the loaded model on a pairs TSV, or per portrait source",
    )
    add_pipeline_arguments(p, pairs_required=False)
    p.add_argument(
        "--documents",
        type=Path,
        nargs="+",
        metavar="EVAL_JSON",
        help="instead of --pairs: thresholds per portrait source and size band from scored document sets "
        "(`python -m tools.docset eval` writes <set>/eval.json); no services needed",
    )
    p.add_argument("--far", type=float, default=1e-3, help="default operating point (false-accept rate)")
    p.add_argument(
        "--impostors",
        choices=("all-cross", "pairs"),
        default="all-cross",
        help="all-cross: every pair of images of different identities (folder names); pairs: the file's own",
    )
    p.add_argument("--out-dir", type=Path, help="thresholds directory (default: facegate/calibration)")
    p.add_argument("--json", action="store_true", help="print the written thresholds as JSON")
    p.set_defaults(func=run)


def cross_identity_scores(images: dict[str, Any]) -> tuple[np.ndarray, int, int]:
    """Cosine scores of every pair of embedded images whose folders (identities) differ."""
    paths = [p for p, r in images.items() if r.vector is not None]
    identities = np.asarray([str(Path(p).parent) for p in paths])
    vectors = np.stack([images[p].vector for p in paths]).astype(np.float64)
    sims = vectors @ vectors.T
    upper = np.triu(np.ones_like(sims, dtype=bool), k=1)
    different = identities[:, None] != identities[None, :]
    return sims[upper & different], len(paths), len(set(identities.tolist()))


def run(args: argparse.Namespace) -> int:
    from facegate.thresholds import CALIBRATION_DIR, OperatingPoint, Thresholds, write_thresholds

    if not 0 < args.far < 1:
        raise SystemExit("--far must be between 0 and 1")
    if bool(args.pairs) == bool(args.documents):
        raise SystemExit("give --pairs or --documents (one of them)")
    if args.documents:
        from facegate.commands._calibrate_documents import run_documents

        return run_documents(args)
    pairs, scored, client, wall_s = run_pairs(args)
    assert client is not None
    spec = client.spec
    same = pairs.same
    genuine = scored.scores[same]
    if args.impostors == "all-cross":
        identity_of = {p: str(Path(p).parent) for p in pairs.image_paths()}
        if any(
            identity_of[r["left_path"]] != identity_of[r["right_path"]]
            for r in pairs.rows
            if r["same"] == "1"
        ):
            raise SystemExit(
                "genuine pairs span folders: identities are not folders here; use --impostors pairs"
            )
        impostor, images_used, identities = cross_identity_scores(scored.images)
        source = (
            f"all {len(impostor)} cross-identity pairs among {images_used} images of {identities} identities"
        )
    else:
        impostor = scored.scores[~same]
        source = f"the file's {len(impostor)} impostor pairs"
    fars = tuple(sorted({args.far, *EXTRA_FARS}))
    points = []
    for far in fars:
        point = evaluation.tar_at_far(genuine, impostor, far)
        if not point.resolved:
            print(
                f"warning: FAR {far:g} needs >= {int(np.ceil(1 / far))} impostors, have {point.impostors}; "
                "its threshold only says 'no impostor accepted'",
                file=sys.stderr,
            )
        points.append(
            OperatingPoint(far=far, threshold=point.threshold, tar=point.tar, measured_far=point.measured_far)
        )
    failures = sorted(p for p, r in scored.images.items() if r.vector is None)
    thresholds = Thresholds(
        model_id=spec.model_id,
        model_version=spec.model_version,
        metric=spec.metric,
        default_far=args.far,
        points=tuple(points),
        calibrated_on=pairs.path.name,
        extra={
            "flip_fusion": spec.flip_fusion,
            "genuine_pairs": len(genuine),
            "impostor_source": source,
            "impostor_comparisons": len(impostor),
            "images_without_face": len(failures),
            "method": "lowest threshold accepting at most floor(FAR x impostors) impostor comparisons",
        },
    )
    path = write_thresholds(thresholds, args.out_dir or CALIBRATION_DIR)
    if args.json:
        json.dump(json.loads(path.read_text()), sys.stdout, indent=2)
        print()
    else:
        print(f"wrote {path} ({wall_s:.0f} s)")
        print(f"impostors: {source}; genuine: {len(genuine)} pairs; images without a face: {len(failures)}")
        for p in points:
            print(
                f"  FAR {p.far:<7g} threshold {p.threshold:.4f}  TAR {p.tar:.4f}  measured FAR {p.measured_far:.2e}"
            )
    return 0
