"""`facegate calibrate --documents`: from scored document sets to the sources file docverify loads.

The sets are written here in tools.docset eval's format with synthetic templates (the command only
does arithmetic on them; the real sets take minutes to build and score, and the calibration
committed from them is exercised through docverify in tests/docverify/test_source_thresholds.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from facegate.cli import main
from facegate.thresholds import load_source_thresholds

SOURCES = ("portrait.jpg", "dg2_jpeg.bin", "dg2_jp2.bin", "page.jpg")


def scored_set(path, seed: int, version: str = "v-test", n: int = 160) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        own = rng.normal(size=16)
        for source in SOURCES:
            live = own + 0.4 * rng.normal(size=16)
            doc = own + 0.4 * rng.normal(size=16)
            live, doc = live / np.linalg.norm(live), doc / np.linalg.norm(doc)
            rows.append(
                {
                    "identity": f"person_{i:03d}",
                    "source": source,
                    "similarity": float(live @ doc),
                    "live_template": live.tolist(),
                    "document_template": doc.tolist(),
                    "inter_eye_px": float(rng.uniform(20, 90)),
                }
            )
    data = {"seed": seed, "model_version": version, "raw": {"rows": rows, "specimens": []}}
    path.mkdir(parents=True, exist_ok=True)
    (path / "eval.json").write_text(json.dumps(data))


def test_writes_every_source_with_bands_and_held_out_checks(tmp_path, capsys) -> None:
    scored_set(tmp_path / "s0", 0)
    scored_set(tmp_path / "s1", 1)
    out = tmp_path / "calibration"
    args = ["calibrate", "--documents", str(tmp_path / "s0/eval.json"), str(tmp_path / "s1/eval.json")]
    assert main([*args, "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "page_scan" in printed and "held out" in printed
    loaded = load_source_thresholds("v-test", out)
    assert set(loaded.sources) == {"image", "dg2_jpeg", "dg2_jpeg2000", "page_scan"}
    assert loaded.default_far == 1e-3 and loaded.calibrated_on.endswith("seeds 0, 1")
    for bands in loaded.sources.values():
        assert bands[-1].max_inter_eye_px is None and 1e-3 in {p.far for p in bands[0].points}
    assert len(loaded.extra["held_out"]["page_scan"]) == 2


def test_sets_of_different_model_versions_are_refused(tmp_path) -> None:
    scored_set(tmp_path / "s0", 0, version="v-a")
    scored_set(tmp_path / "s1", 1, version="v-b")
    with pytest.raises(SystemExit, match="different model versions"):
        main(["calibrate", "--documents", str(tmp_path / "s0/eval.json"), str(tmp_path / "s1/eval.json")])


def test_the_same_set_twice_is_not_new_evidence(tmp_path) -> None:
    scored_set(tmp_path / "s0", 0)
    path = str(tmp_path / "s0/eval.json")
    with pytest.raises(SystemExit, match="same seed twice"):
        main(["calibrate", "--documents", path, path, "--out-dir", str(tmp_path / "c")])


def test_pairs_and_documents_are_one_or_the_other(tmp_path) -> None:
    scored_set(tmp_path / "s0", 0)
    with pytest.raises(SystemExit, match="one of them"):
        main(["calibrate", "--pairs", "x.tsv", "--documents", str(tmp_path / "s0/eval.json")])
    with pytest.raises(SystemExit, match="one of them"):
        main(["calibrate"])
