"""`facegate calibrate --documents`: thresholds per portrait source and size band.

Reads the scored document-style sets that ``python -m tools.docset eval`` writes (``eval.json``:
templates and Verify's genuine scores, so no service runs here) and writes
``facegate/calibration/<model_version>.sources.json``, which docverify loads. Method and limits:
``facegate.source_calibration`` and docs/accuracy-documents.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facegate.source_calibration import BandRules, ScoredDocuments, calibrate_bands, held_out
from facegate.thresholds import CALIBRATION_DIR, SourceThresholds, write_source_thresholds

#: tools.docset's file names -> the portrait sources docverify names.
DOCSET_SOURCES = {
    "portrait.jpg": "image",
    "dg2_jpeg.bin": "dg2_jpeg",
    "dg2_jp2.bin": "dg2_jpeg2000",
    "page.jpg": "page_scan",
}


def read_sets(paths: list[Path]) -> tuple[str, list[int], dict[str, list[dict]]]:
    """(model version, seeds, rows per portrait source) of every set; they must share one model version."""
    versions, seeds, rows = set(), [], {name: [] for name in DOCSET_SOURCES.values()}
    for path in paths:
        data = json.loads(path.read_text())
        versions.add(data["model_version"])
        seeds.append(data["seed"])
        for row in data["raw"]["rows"]:
            if "inter_eye_px" not in row:
                raise SystemExit(
                    f"{path}: rows carry no portrait size; score the set again with tools.docset eval"
                )
            rows[DOCSET_SOURCES[row["source"]]].append(row)
    if len(versions) != 1:
        raise SystemExit(f"the sets were scored with different model versions: {sorted(versions)}")
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"the same seed twice: {seeds} (a set scored twice is not new evidence)")
    return versions.pop(), seeds, rows


def run_documents(args: argparse.Namespace) -> int:
    version, seeds, rows = read_sets(args.documents)
    rules = BandRules(default_far=args.far, fars=tuple(sorted({args.far, *BandRules().fars})))
    sources, checks = {}, {}
    for source, source_rows in rows.items():
        data = ScoredDocuments.from_rows(source_rows)
        sources[source] = calibrate_bands(data, rules)
        checks[source] = held_out(data, rules)
    thresholds = SourceThresholds(
        model_version=version,
        sources=sources,
        default_far=rules.default_far,
        calibrated_on=f"tools.docset sets, seeds {', '.join(map(str, seeds))}",
        extra={
            "method": "per source, equal-count bands of portrait eye distance; per band the lowest threshold "
            "accepting at most floor(FAR x impostors) live-vs-document comparisons of different identities "
            "(across sets); genuine = Verify's similarity, -1 where it could not compare",
            "rules": {
                "max_bands": rules.max_bands,
                "min_genuine": rules.min_genuine,
                "min_allowed": rules.min_allowed,
            },
            "held_out": checks,
        },
    )
    path = write_source_thresholds(thresholds, args.out_dir or CALIBRATION_DIR)
    if args.json:
        json.dump(json.loads(path.read_text()), sys.stdout, indent=2)
        print()
        return 0
    print(f"wrote {path}")
    for source, bands in sources.items():
        for band in bands:
            point = band.at_far(rules.default_far)
            print(
                f"  {source:<13} {band.label():<28} threshold {point.threshold:.4f}  TAR {point.tar:.4f}  "
                f"({band.genuine} genuine, {band.impostors} impostors)"
            )
        for check in checks[source]:
            print(
                f"  {source:<13} held out (calibrated on half {check['calibrated_on_half']}): "
                f"FAR {check['far']:.2e} ({check['impostors_accepted']} of {check['impostors']}), "
                f"TAR {check['tar']:.4f}, refused for size {check['refused_for_size']}"
            )
    return 0
