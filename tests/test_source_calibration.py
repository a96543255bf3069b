"""Thresholds per portrait source and size band (facegate.source_calibration, facegate.thresholds).

Synthetic templates stand in for a scored document set here: the functions are pure arithmetic over
score matrices, and the case that matters - small portraits letting impostors score higher - is
built in on purpose so the tests can see the bands react to it. The calibration committed for the
real model is checked through the real docverify service in tests/docverify/test_source_thresholds.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facegate.errors import FailedPrecondition, InvalidArgument
from facegate.source_calibration import BandRules, ScoredDocuments, apply_bands, calibrate_bands, held_out
from facegate.thresholds import (
    OperatingPoint,
    SizeBand,
    SourceThresholds,
    load_source_thresholds,
    write_source_thresholds,
)

RULES = BandRules(fars=(1e-2, 1e-3), default_far=1e-2, max_bands=3, min_genuine=30, min_allowed=5)


def synthetic(n: int = 300, dim: int = 32, seed: int = 0, small_lean: bool = True) -> ScoredDocuments:
    """n identities; the smaller a document portrait, the more it leans towards one shared face
    (what small portraits do to a real model), so impostors score higher against small ones."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=dim)
    shared /= np.linalg.norm(shared)
    own = rng.normal(size=(n, dim))
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    size = rng.uniform(20, 80, n)
    lean = np.clip(((60 - size) if small_lean else (size - 40)) / 40, 0, 1)[:, None] * 1.2
    doc = own + lean * shared + 0.3 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    doc /= np.linalg.norm(doc, axis=1, keepdims=True)
    live = own + 0.8 * shared + 0.3 * rng.normal(size=(n, dim)) / np.sqrt(dim)  # every face shares a mean
    live /= np.linalg.norm(live, axis=1, keepdims=True)
    return ScoredDocuments(
        identities=np.asarray([f"id{i:04d}" for i in range(n)]),
        genuine=np.einsum("ij,ij->i", live, doc),
        live=live,
        live_ok=np.ones(n, bool),
        doc=doc,
        doc_ok=np.ones(n, bool),
        inter_eye_px=size,
    )


def test_small_portraits_get_their_own_stricter_threshold() -> None:
    bands = calibrate_bands(synthetic(), RULES)
    assert len(bands) == 3
    assert bands[0].min_inter_eye_px <= 20.5 and bands[-1].max_inter_eye_px is None
    for lower, upper in itertools.pairwise(bands):
        assert lower.max_inter_eye_px == upper.min_inter_eye_px  # contiguous
    small, large = bands[0].at_far(1e-2), bands[-1].at_far(1e-2)
    assert small.threshold > large.threshold + 0.05
    assert all(b.genuine >= RULES.min_genuine for b in bands)


def test_one_threshold_for_all_sizes_overshoots_its_far_on_small_portraits() -> None:
    data = synthetic()
    (pooled,) = calibrate_bands(data, BandRules(**{**RULES.__dict__, "max_bands": 1}))
    small = data.subset(data.inter_eye_px < 35)
    assert apply_bands(small, (pooled,), 1e-2)["far"] > 2e-2  # the pooled 1e-2 threshold
    banded = calibrate_bands(data, RULES)
    assert apply_bands(small, banded, 1e-2)["far"] <= 1.5e-2


def test_a_smaller_band_never_gets_a_lower_threshold_than_a_larger_one() -> None:
    """Here the *large* portraits lean to the shared face: the small band takes the large one's threshold."""
    bands = calibrate_bands(synthetic(small_lean=False), RULES)
    for far in (1e-2, 1e-3):
        thresholds = [b.at_far(far).threshold for b in bands]
        assert thresholds == sorted(thresholds, reverse=True)
    assert bands[0].at_far(1e-2).threshold == bands[-1].at_far(1e-2).threshold


def test_portraits_below_the_smallest_band_are_refused() -> None:
    data = synthetic()
    bands = calibrate_bands(data.subset(data.inter_eye_px >= 30), RULES)
    assert bands[0].min_inter_eye_px >= 29.5
    result = apply_bands(data, bands, 1e-2)
    assert result["refused_for_size"] == int(np.sum(data.inter_eye_px < bands[0].min_inter_eye_px))
    small = data.subset(data.inter_eye_px < bands[0].min_inter_eye_px)
    assert apply_bands(small, bands, 1e-2)["impostors_accepted"] == 0


def test_a_far_is_offered_only_where_every_band_resolves_it() -> None:
    rules = BandRules(**{**RULES.__dict__, "fars": (1e-2, 1e-3, 1e-5)})
    bands = calibrate_bands(synthetic(), rules)
    assert {p.far for b in bands for p in b.points} == {1e-2, 1e-3}  # 1e-5 needs 100,000 impostors a band


def test_too_little_data_for_the_default_far_is_an_error() -> None:
    with pytest.raises(ValueError, match="resolve FAR"):
        calibrate_bands(synthetic(n=20), BandRules(fars=(1e-3,), default_far=1e-3))


def test_fewer_bands_when_the_data_cannot_fill_more() -> None:
    bands = calibrate_bands(synthetic(n=80), RULES)  # 26 a band for three: too few
    assert len(bands) < 3


def test_held_out_halves_share_no_identity_and_report_both_ways() -> None:
    checks = held_out(synthetic(), RULES)
    assert [c["calibrated_on_half"] for c in checks] == [0, 1]
    for c in checks:
        assert c["impostors"] == 150 * 149 and c["genuine"] == 150
        assert 0 <= c["far"] < 0.05


def _thresholds() -> SourceThresholds:
    points = (OperatingPoint(far=1e-3, threshold=0.6, tar=0.9, measured_far=9e-4),)
    bands = (SizeBand(20.0, 40.0, points, 50, 9000), SizeBand(40.0, None, points, 60, 9000))
    return SourceThresholds(model_version="v1", sources={"page_scan": bands}, calibrated_on="test")


def test_source_thresholds_round_trip_and_pick_the_band(tmp_path) -> None:
    write_source_thresholds(_thresholds(), tmp_path)
    loaded = load_source_thresholds("v1", tmp_path)
    assert loaded == _thresholds()
    assert loaded.band("page_scan", 19.9) is None
    assert loaded.band("page_scan", 20.0).max_inter_eye_px == 40.0
    assert loaded.band("page_scan", 400.0).min_inter_eye_px == 40.0
    assert loaded.check_far("page_scan", None) == 1e-3
    with pytest.raises(InvalidArgument, match=r"FAR 0\.01 on page_scan"):
        loaded.check_far("page_scan", 0.01)
    with pytest.raises(FailedPrecondition, match="dg2_jpeg"):
        loaded.check_far("dg2_jpeg", None)
    with pytest.raises(FailedPrecondition, match="calibrate --documents"):
        load_source_thresholds("v2", tmp_path)


def test_a_recalibrated_file_is_read_again_and_a_removed_one_fails_closed(tmp_path) -> None:
    """Services load the thresholds on every decision; the parsed file is kept only while it is unchanged."""
    write_source_thresholds(_thresholds(), tmp_path)
    assert load_source_thresholds("v1", tmp_path).calibrated_on == "test"
    recalibrated = SourceThresholds(
        model_version="v1", sources=_thresholds().sources, calibrated_on="recalibrated on more sets"
    )
    write_source_thresholds(recalibrated, tmp_path)
    assert load_source_thresholds("v1", tmp_path).calibrated_on == "recalibrated on more sets"
    (tmp_path / "v1.sources.json").unlink()
    with pytest.raises(FailedPrecondition):
        load_source_thresholds("v1", tmp_path)
