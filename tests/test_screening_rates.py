"""The screening-rate arithmetic of tools/screening_rates.py on hand-made templates."""

from __future__ import annotations

import numpy as np
import pytest

from tools.screening_rates import projected_flagged, screening_rates


def unit(*angles: float) -> np.ndarray:
    """2-d unit rows at these angles (degrees): cosine between two is the cosine of their difference."""
    a = np.radians(angles)
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_flags_find_and_count_as_the_list_is_screened() -> None:
    # ann's entry at 0 deg, her other photo at 10; bob's entry at 50, his other photo at 140.
    rows = unit(0, 10, 50, 140)
    people = ["ann", "ann", "bob", "bob"]
    r = screening_rates(rows, people, threshold=0.7)  # cos 45.6 deg
    # Impostor comparisons (photo vs the other person's entry): 0-50, 10-50, 50-0, 140-0.
    assert (r.over, r.comparisons) == (1, 4)  # only 10 vs 50 (40 deg, cos 0.766) is over
    assert r.comparison_far == pytest.approx(0.25)
    assert r.flagged == pytest.approx(0.25) and r.hits_per_traveller == pytest.approx(0.25)
    # Listed travellers: ann's 10 deg photo finds her entry (cos 0.98); bob's 140 does not (90 deg).
    assert r.found == pytest.approx(0.5)


def test_a_stricter_threshold_flags_fewer_and_finds_fewer() -> None:
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(60, 8))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    people = [f"p{i // 3}" for i in range(60)]
    loose, strict = (screening_rates(rows, people, t) for t in (0.2, 0.6))
    assert loose.flagged > strict.flagged and loose.comparison_far > strict.comparison_far
    assert loose.found >= strict.found


def test_the_projection_grows_with_the_list() -> None:
    assert projected_flagged(1e-3, 1) == pytest.approx(1e-3)
    assert projected_flagged(1e-3, 1000) == pytest.approx(1 - 0.999**1000)
    assert projected_flagged(0.0, 1_000_000) == 0.0
