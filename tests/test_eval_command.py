"""`facegate eval` end to end: real detection and embedding services started in-process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

PAIRS_EACH = 20


@pytest.fixture(scope="module")
def subset(tmp_path_factory, faces_dir: Path) -> Path:
    """20 genuine + 20 impostor official dev pairs, absolute paths, plus an extra column."""
    rows = list(csv.DictReader((faces_dir / "pairs.tsv").open(), delimiter="\t"))
    chosen = [r for r in rows if r["same"] == "1"][:PAIRS_EACH] + [r for r in rows if r["same"] == "0"][
        :PAIRS_EACH
    ]
    path = tmp_path_factory.mktemp("eval") / "pairs40.tsv"
    with path.open("w") as fh:
        fh.write("left_path\tright_path\tsame\tnote\n")
        for i, r in enumerate(chosen):
            fh.write(f"{faces_dir / r['left_path']}\t{faces_dir / r['right_path']}\t{r['same']}\trow{i}\n")
    return path


@pytest.mark.slow
def test_eval_reports_the_protocol_numbers(subset: Path, tmp_path: Path):
    scores = tmp_path / "scores.tsv"
    env = {**os.environ, "REDIS_URL": "", "TF_CPP_MIN_LOG_LEVEL": "2", "FACEGATE_LOG_LEVEL": "WARNING"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "facegate",
            "eval",
            "--pairs",
            str(subset),
            "--json",
            "--scores-out",
            str(scores),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert (report["pairs"], report["genuine"], report["impostor"]) == (40, 20, 20)
    assert report["cv_folds"] == 10
    assert report["cv_accuracy"] >= 0.9
    assert report["auc"] >= 0.95
    assert 0 <= report["eer"] <= 0.1
    assert set(report["tar_at_far"]) == {"0.001", "0.01"}
    assert report["tar_at_far"]["0.001"]["resolved"] is False  # 20 impostors cannot show FAR 1e-3
    assert isinstance(report["failures_to_detect"]["images"], int)
    assert report["errors"]["images"] == 0
    assert report["genuine_mean"] > report["impostor_mean"] + 0.3
    assert report["model_version"] and report["images"] <= 80
    with scores.open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == 40
    assert [r["note"] for r in rows] == [f"row{i}" for i in range(40)]  # extra columns pass through
    assert all(-1.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert {r["status"] for r in rows} <= {
        "ok",
        "no_face:left",
        "no_face:right",
        "no_face:left,no_face:right",
    }


@pytest.mark.slow
def test_calibrate_writes_versioned_thresholds(subset: Path, tmp_path: Path):
    from facegate.thresholds import load_thresholds
    from services.runtime.model_spec import DEFAULT

    env = {**os.environ, "REDIS_URL": "", "TF_CPP_MIN_LOG_LEVEL": "2", "FACEGATE_LOG_LEVEL": "WARNING"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "facegate",
            "calibrate",
            "--pairs",
            str(subset),
            "--far",
            "0.01",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    thresholds = load_thresholds(DEFAULT.model_version, tmp_path)
    assert thresholds.default_far == 0.01
    assert [p.far for p in thresholds.points] == [1e-4, 1e-3, 1e-2]
    # all cross-identity pairs among the subset's images: far more than its 20 impostor rows
    assert thresholds.extra["impostor_comparisons"] > 1000
    point = thresholds.at_far()
    assert 0.0 < point.threshold < 1.0
    assert point.measured_far <= 0.01
    assert point.tar >= 0.9
    thresholds_list = [p.threshold for p in thresholds.points]
    assert thresholds_list == sorted(thresholds_list, reverse=True)  # stricter FAR, higher threshold
