"""Verification metrics on hand-made score sets whose answers are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from facegate import evaluation


def test_perfectly_separated_scores():
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.0] * 10)
    same = np.array([1, 1, 1, 0, 0, 0] * 10, dtype=bool)
    report = evaluation.summarise(scores, same)
    assert report.cv_accuracy == 1.0
    assert report.auc == 1.0
    assert report.eer == 0.0
    assert all(0.2 < t < 0.7 for t in report.cv_thresholds)
    assert report.tar_at_far["0.01"].tar == 1.0


def test_auc_counts_ties_as_half():
    assert evaluation.roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    # genuine {0.9, 0.4} vs impostor {0.5, 0.1}: 3 of 4 orderings right
    assert evaluation.roc_auc(np.array([0.9, 0.4, 0.5, 0.1]), np.array([1, 1, 0, 0], bool)) == 0.75


def test_equal_error_rate_on_a_symmetric_overlap():
    # 10 genuine 0.55..1.0, 10 impostor 0.0..0.45 plus one impostor above and one genuine below
    genuine = np.r_[np.linspace(0.55, 1.0, 9), 0.3]
    impostor = np.r_[np.linspace(0.0, 0.45, 9), 0.7]
    scores = np.r_[genuine, impostor]
    same = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    eer, threshold = evaluation.equal_error_rate(scores, same)
    assert eer == pytest.approx(0.1)
    assert 0.3 < threshold <= 0.7


def test_threshold_at_far_accepts_at_most_the_allowed_impostors():
    impostor = np.arange(1000) / 1000.0  # 0.000 .. 0.999
    t = evaluation.threshold_at_far(impostor, 0.01)  # 10 allowed above
    assert np.sum(impostor >= t) == 10
    assert evaluation.tar_at_far(np.array([0.5, 0.995]), impostor, 0.01).tar == 0.5
    point = evaluation.tar_at_far(np.array([1.0]), impostor[:300], 1e-3)
    assert point.impostors_above == 0 and not point.resolved  # 300 impostors cannot show 1e-3
    assert evaluation.tar_at_far(np.array([1.0]), impostor, 1e-3).resolved


def test_cross_validation_picks_threshold_on_other_folds():
    rng = np.random.default_rng(1)
    genuine = rng.normal(0.7, 0.1, 300)
    impostor = rng.normal(0.1, 0.1, 300)
    scores = np.r_[genuine, impostor]
    same = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    acc, sem, thresholds = evaluation.cross_validated_accuracy(scores, same)
    assert len(thresholds) == 10
    # the Bayes-optimal threshold is 0.4; two unit-sigma-apart-by-6 normals err ~0.13 %
    assert all(0.3 < t < 0.5 for t in thresholds)
    assert acc > 0.99 and sem >= 0
    # folds from a column: the same answer when the column matches round-robin
    assert evaluation.cross_validated_accuracy(scores, same, np.arange(600) % 10)[0] == acc


def test_best_threshold_maximises_training_accuracy():
    scores = np.array([0.1, 0.2, 0.35, 0.4, 0.6, 0.9])
    same = np.array([0, 0, 1, 0, 1, 1], bool)
    t = evaluation.best_threshold(scores, same)
    assert evaluation.accuracy_at(scores, same, t) == pytest.approx(5 / 6)
