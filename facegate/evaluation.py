"""Verification metrics over scored pairs: the numbers `facegate eval` and `facegate calibrate` report.

Pure numpy on (score, same) arrays, so every number can be unit-tested without a model.
Conventions: higher score = more alike; a pair is accepted when ``score >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FOLDS = 10


def _split(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if scores.shape != same.shape:
        raise ValueError("scores and labels differ in length")
    return scores[same], scores[~same]


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if len(scores) == 0:
        return math.nan
    return float(np.mean((scores >= threshold) == same))


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Threshold with the highest accuracy on these pairs (midpoint of the best gap; ties: the middle one)."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    values = np.unique(scores)
    candidates = np.concatenate(([values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]))
    # Accuracy at every candidate in one pass: sort once, count genuine/impostor below each cut.
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    genuine_cum = np.concatenate(([0], np.cumsum(same[order])))
    below = np.searchsorted(sorted_scores, candidates, side="left")
    genuine_below = genuine_cum[below]
    impostor_below = below - genuine_below
    correct = impostor_below + (same.sum() - genuine_below)
    best = np.flatnonzero(correct == correct.max())
    return float(candidates[best[len(best) // 2]])


def fold_ids(count: int, given: list[int] | None = None) -> np.ndarray:
    """Fold of each pair: the TSV's own fold column when present, else round-robin (i mod 10)."""
    if given is not None:
        return np.asarray(given, dtype=int)
    return np.arange(count) % FOLDS


def cross_validated_accuracy(
    scores: np.ndarray, same: np.ndarray, folds: np.ndarray | None = None
) -> tuple[float, float, list[float]]:
    """LFW protocol: per fold, pick the threshold on the other folds, measure on this one.

    Returns (mean accuracy, standard error of the mean, per-fold thresholds).
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    folds = fold_ids(len(scores)) if folds is None else np.asarray(folds)
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        if test.all():
            raise ValueError("cross-validation needs at least two folds")
        threshold = best_threshold(scores[~test], same[~test])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(scores[test], same[test], threshold))
    acc = np.asarray(accuracies)
    sem = float(acc.std(ddof=1) / math.sqrt(len(acc))) if len(acc) > 1 else 0.0
    return float(acc.mean()), sem, thresholds


@dataclass(frozen=True)
class FarPoint:
    far: float  # target
    threshold: float
    tar: float
    measured_far: float
    impostors_above: int
    impostors: int

    @property
    def resolved(self) -> bool:
        """Whether the impostor count can express this FAR at all (1 / impostors <= far)."""
        return self.impostors * self.far >= 1.0


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """Lowest threshold at which at most ``floor(far * impostors)`` impostors are accepted.

    With fewer impostors than 1 / far this is "no impostor accepted", i.e. just above the
    highest impostor score: the most that the data can say, which is weaker than the target.
    """
    imp = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    if len(imp) == 0:
        raise ValueError("no impostor scores")
    allowed = math.floor(far * len(imp) + 1e-9)
    if allowed >= len(imp):
        return float(-np.inf)
    return float(np.nextafter(imp[allowed], np.inf))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> FarPoint:
    genuine = np.asarray(genuine, dtype=np.float64)
    impostor = np.asarray(impostor, dtype=np.float64)
    threshold = threshold_at_far(impostor, far)
    above = int(np.sum(impostor >= threshold))
    return FarPoint(
        far=far,
        threshold=threshold,
        tar=float(np.mean(genuine >= threshold)) if len(genuine) else math.nan,
        measured_far=above / len(impostor),
        impostors_above=above,
        impostors=len(impostor),
    )


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve = P(genuine score > impostor score), ties counting one half."""
    genuine, impostor = _split(scores, same)
    if len(genuine) == 0 or len(impostor) == 0:
        return math.nan
    both = np.concatenate((genuine, impostor))
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both), dtype=np.float64)
    sorted_vals = both[order]
    # Average ranks for ties.
    i = 0
    while i < len(both):
        j = i
        while j + 1 < len(both) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[: len(genuine)].sum() - len(genuine) * (len(genuine) + 1) / 2
    return float(u / (len(genuine) * len(impostor)))


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): where false accepts and false rejects are equally frequent.

    Evaluated at every distinct score; at the crossing the two rates are averaged, which is
    exact when they meet and within one pair's weight otherwise.
    """
    genuine, impostor = _split(scores, same)
    if len(genuine) == 0 or len(impostor) == 0:
        return math.nan, math.nan
    cuts = np.unique(np.concatenate((genuine, impostor, [np.inf])))
    g = np.sort(genuine)
    m = np.sort(impostor)
    frr = np.searchsorted(g, cuts, side="left") / len(g)  # genuine below the cut
    far = 1.0 - np.searchsorted(m, cuts, side="left") / len(m)  # impostors at or above
    gap = np.abs(far - frr)
    best = int(np.argmin(gap))
    return float((far[best] + frr[best]) / 2), float(cuts[best])


@dataclass(frozen=True)
class Report:
    pairs: int
    genuine: int
    impostor: int
    cv_accuracy: float
    cv_accuracy_sem: float
    cv_thresholds: list[float]
    tar_at_far: dict[str, FarPoint]
    eer: float
    eer_threshold: float
    auc: float
    genuine_mean: float
    impostor_mean: float


def summarise(
    scores: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray | None = None,
    fars: tuple[float, ...] = (1e-3, 1e-2),
) -> Report:
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    genuine, impostor = _split(scores, same)
    cv, sem, thresholds = cross_validated_accuracy(scores, same, folds)
    eer, eer_t = equal_error_rate(scores, same)
    return Report(
        pairs=len(scores),
        genuine=len(genuine),
        impostor=len(impostor),
        cv_accuracy=cv,
        cv_accuracy_sem=sem,
        cv_thresholds=thresholds,
        tar_at_far={f"{far:g}": tar_at_far(genuine, impostor, far) for far in fars},
        eer=eer,
        eer_threshold=eer_t,
        auc=roc_auc(scores, same),
        genuine_mean=float(genuine.mean()) if len(genuine) else math.nan,
        impostor_mean=float(impostor.mean()) if len(impostor) else math.nan,
    )
