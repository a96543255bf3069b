"""The score study's own logic (tools/score_study.py) on hand-made data: no model is loaded."""

from __future__ import annotations

import numpy as np
import pytest

from services.detection.alignment import align_face, template_points
from tools import score_study as ss


def _face() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    landmarks = np.array([[55.0, 65.0], [95.0, 66.0], [75.0, 88.0], [58.0, 108.0], [92.0, 109.0]])
    return rgb, landmarks


def test_unshifted_variant_is_the_services_alignment():
    rgb, landmarks = _face()
    assert np.array_equal(
        ss.variant_crop(rgb, landmarks, ss.Variant(0.1)), align_face(rgb, landmarks, 160, 0.1)
    )


def test_shifted_variant_moves_the_crop_content_by_the_shift():
    rgb, landmarks = _face()
    base = ss.variant_crop(rgb, landmarks, ss.Variant(0.2))
    moved = ss.variant_crop(rgb, landmarks, ss.Variant(0.2, dx=4, dy=-4))
    # Content at crop (x, y) appears at (x + 4, y - 4), up to warpAffine's fixed-point rounding.
    diff = np.abs(moved[20:140, 24:144].astype(int) - base[24:144, 20:140])
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert not np.array_equal(moved, base)


def test_margin_scales_the_template_about_the_crop_centre():
    # Why a margin sweep is a scale TTA: the canonical points move radially from (80, 80).
    wide, tight = template_points(160, 0.25) - 80, template_points(160, 0.05) - 80
    assert np.allclose(wide, tight * 0.75 / 0.95)


def test_flip_fusion_of_cached_rows_is_the_services_sum_then_l2():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(6, 2, 128)).astype(np.float32)
    fused = ss.fused_template([raw])
    expected = raw[:, 0] + raw[:, 1]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(fused, expected, atol=1e-6)
    plain = ss.fused_template([raw], flip=False)
    assert np.allclose(np.linalg.norm(plain, axis=1), 1.0)
    assert not np.allclose(plain, fused)
    # Two identical variants average to the same template in either TTA mode.
    assert np.allclose(ss.fused_template([raw, raw]), fused, atol=1e-6)
    assert np.allclose(ss.fused_template([raw, raw], mode="mean"), fused, atol=1e-6)


def test_scores_of_a_pair_with_a_faceless_image_are_rejected():
    matrix = np.full((3, 3), 0.9)
    scores = ss.Scores(matrix, np.array([True, False, True]))
    pairs = ss.Pairs(np.array([0, 0]), np.array([1, 2]), np.array([True, True]), np.array([0, 1]))
    assert list(scores.pairs(pairs)) == [ss.NO_FACE, 0.9]
    fused = ss.z_fusion(np.array([ss.NO_FACE, 0.5]), np.array([0.1, ss.NO_FACE]), (0, 1), (0, 1), 0.3)
    assert list(fused) == [ss.NO_FACE, ss.NO_FACE]


def test_cross_identity_pairs_skip_same_folder_and_faceless_images():
    paths = ["images/A/A_1.jpg", "images/A/A_2.jpg", "images/B/B_1.jpg", "images/C/C_1.jpg"]
    a, b = ss.cross_identity(paths, np.arange(4), np.array([True, True, True, False]))
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 2), (1, 2)]


def _two_models(n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model A separates genuine from impostor; model B is noise."""
    rng = np.random.default_rng(3)
    same = np.arange(n) % 2 == 0
    a = np.where(same, 1.0, -1.0) + rng.normal(0, 0.6, n)
    b = rng.normal(0, 1, n)
    return a, b, same, np.arange(n) % 10


def test_fitted_weight_goes_to_the_informative_model():
    a, b, same, folds = _two_models()
    make = lambda w: ss.z_fusion(a, b, (0, 1), (0, 1), w)  # noqa: E731
    assert ss.pick_weight(make, same) <= 0.2
    accuracy, sem, chosen, per_fold = ss.cv_fitted(make, same, folds)
    assert len(chosen) == 10 and max(chosen) <= 0.3
    assert accuracy > 0.9 and sem >= 0 and np.isclose(np.mean(per_fold), accuracy)
    # The same rule with the models swapped picks the other end.
    assert ss.pick_weight(lambda w: ss.z_fusion(b, a, (0, 1), (0, 1), w), same) >= 0.8


def test_quality_adjustment_shifts_scores_and_keeps_rejections():
    s = np.array([0.5, ss.NO_FACE])
    out = ss.quality_adjusted(s, np.array([-1.0, 2.0]), 0.05)
    assert out[0] == 0.45 and out[1] == ss.NO_FACE


def test_as_norm_leaves_both_identities_of_a_pair_out_of_its_cohort():
    # Images 0-1 are person A, 2-3 person B, 4-7 four others. A and B look alike (0.9 to each
    # other); the others are a plain cohort. Were B's images in A's cohort (or A's in B's), the
    # impostor pair A-B would be normalised by itself and look ordinary.
    ids = np.array(["A", "A", "B", "B", "c", "d", "e", "f"])
    rng = np.random.default_rng(3)
    matrix = rng.uniform(0.0, 0.2, (8, 8))
    matrix = (matrix + matrix.T) / 2
    matrix[np.ix_([0, 1, 2, 3], [0, 1, 2, 3])] = 0.9
    valid = np.ones(8, bool)
    z = ss.as_norm(matrix, ids, valid, k=3)
    third = {"AB": [4, 5, 6, 7], "A": [2, 3, 4, 5, 6, 7]}  # a genuine pair's cohort keeps B
    for a, b, key in ((0, 2, "AB"), (1, 3, "AB"), (0, 1, "A")):
        cohort = np.array(third[key])
        expected = 0.0
        for side in (a, b):
            top = np.sort(matrix[side, cohort])[::-1][:3]
            expected += (matrix[a, b] - top.mean()) / top.std() / 2
        assert z[a, b] == pytest.approx(expected) and z[b, a] == pytest.approx(expected)
    assert z[0, 2] > 5  # far above its cohort: the look-alike pair stands out as it should
    assert z[0, 1] < 1  # person A against a cohort holding the look-alike B: ordinary


def test_as_norm_gives_no_score_to_a_faceless_image():
    ids = np.array(["A", "B", "C", "D", "E"])
    matrix = np.random.default_rng(0).uniform(0, 1, (5, 5))
    z = ss.as_norm((matrix + matrix.T) / 2, ids, np.array([True, True, False, True, True]), k=2)
    assert z[0, 2] == ss.NO_FACE and z[2, 4] == ss.NO_FACE
    assert np.isfinite(z[0, 1]) and z[0, 1] != ss.NO_FACE
