"""The in-process index's sign-sketch path (large lists) returns what the exact scan returns.

50k templates with a low switch-over size stand in for a 1M list; every contract test also runs on
the sketch path through the ``lite_sketch`` backend (conftest), which covers immediate removal,
immediate enrolment, the rebuild at start and concurrency through the service.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.watchlist.memindex import MemoryIndex, hamming_radius
from tests.watchlist.helpers import DIM, planted_near, unit

N = 50_000
PER_SUBJECT = 4  # templates per subject in the large list
GATE = 0.5089  # the calibrated FAR 1e-3 threshold
STRICT = 0.6286  # FAR 1e-4


def planted(rng: np.random.Generator, data: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Probes at cosine 0.55-0.9 to one stored template each (a genuine-like match), random elsewhere."""
    mates = rng.integers(0, len(data), count)
    return planted_near(rng, data[mates]), mates


def load(index: MemoryIndex, data: np.ndarray) -> MemoryIndex:
    n = len(data)
    index.load("big", [f"s{i // PER_SUBJECT}" for i in range(n)], [f"t{i}" for i in range(n)], data)
    return index


@pytest.fixture(scope="module")
def big() -> tuple[np.ndarray, MemoryIndex, MemoryIndex]:
    data = unit(np.random.default_rng(100), N)
    exact = load(MemoryIndex(DIM, sketch_min_templates=N + 1), data)
    sketch = load(MemoryIndex(DIM, sketch_min_templates=10_000, seed=5), data)
    return data, exact, sketch


def same(a: list, b: list) -> None:
    assert [(h.subject_id, h.template_id) for h in a] == [(h.subject_id, h.template_id) for h in b]
    assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


@pytest.mark.parametrize("threshold", [GATE, STRICT])
def test_sketch_returns_the_exact_hits_on_planted_and_random_probes(big, threshold):
    data, exact, sketch = big
    rng = np.random.default_rng(101)
    probes, mates = planted(rng, data, 150)
    randoms = unit(rng, 50)
    before = sketch.sketch_searches
    found = 0
    for batch in (probes, randoms):
        want = exact.search(batch, ["big"], 10, threshold, PER_SUBJECT)
        got = sketch.search(batch, ["big"], 10, threshold, PER_SUBJECT)
        for w, g in zip(want, got, strict=True):
            same(g, w)
            assert all(h.score >= threshold for h in g)
            assert len({h.subject_id for h in g}) == len(g) <= 10
    for q, hits in enumerate(sketch.search(probes, ["big"], 10, threshold, PER_SUBJECT)):
        mate_score = float(data[mates[q]] @ probes[q])
        if mate_score >= threshold:
            found += f"t{mates[q]}" in {h.template_id for h in hits} or hits[0].score > mate_score
    assert sketch.sketch_searches - before == 150 + 50 + 150
    assert sketch.exact_fallbacks == 0
    assert found == sum(float(data[m] @ p) >= threshold for m, p in zip(mates, probes, strict=True))


def test_one_candidate_per_subject_with_its_best_template(big):
    data, exact, sketch = big
    # Subject s7 holds templates t28..t31: a probe between two of them returns s7 once, best template.
    v = data[28] + 0.8 * data[29]
    v = (v / np.linalg.norm(v)).astype(np.float32)
    hits = sketch.search(v[None], ["big"], 5, 0.3, PER_SUBJECT)[0]
    assert [h.subject_id for h in hits].count("s7") == 1
    assert hits[0].subject_id == "s7" and hits[0].template_id == "t28"
    same(hits, exact.search(v[None], ["big"], 5, 0.3, PER_SUBJECT)[0])


def test_a_low_threshold_falls_back_to_the_exact_scan(big):
    data, exact, _sketch = big
    small_budget = load(MemoryIndex(DIM, sketch_min_templates=1, max_candidates=500), data)
    probes = unit(np.random.default_rng(102), 5)
    for threshold in (-1.0, 0.0):
        got = small_budget.search(probes, ["big"], 10, threshold, PER_SUBJECT)
        for w, g in zip(exact.search(probes, ["big"], 10, threshold, PER_SUBJECT), got, strict=True):
            same(g, w)
            assert len(g) == 10
    # Threshold -1 needs no sketch at all (its radius is the whole sketch); threshold 0 overflows the budget.
    assert small_budget.exact_fallbacks == 5 and small_budget.sketch_searches == 0


def test_add_is_searchable_and_remove_is_immediate_on_the_sketch_path():
    rng = np.random.default_rng(103)
    data = unit(rng, 8_000)
    index = load(MemoryIndex(DIM, sketch_min_templates=1), data)
    exact = load(MemoryIndex(DIM, sketch_min_templates=10**9), data)
    face = unit(rng)
    probe = (face + 0.4 * unit(rng)).astype(np.float32)
    probe /= np.linalg.norm(probe)
    for idx in (index, exact):
        idx.add("big", "new", ["tn"], face[None])
    hits = index.search(probe[None], ["big"], 10, GATE, PER_SUBJECT)[0]
    assert hits[0].subject_id == "new"
    same(hits, exact.search(probe[None], ["big"], 10, GATE, PER_SUBJECT)[0])
    index.remove_subject("big", "new")
    assert "new" not in {h.subject_id for h in index.search(probe[None], ["big"], 100, -1.0, PER_SUBJECT)[0]}
    assert "new" not in {h.subject_id for h in index.search(probe[None], ["big"], 100, GATE, PER_SUBJECT)[0]}
    # Remove most subjects: compaction copies the sketches with the vectors; results stay exact.
    for s in range(0, 1_500):
        for idx in (index, exact):
            idx.remove_subject("big", f"s{s}")
    assert index.template_count("big") == 2_000
    assert index._lists["big"].n < 8_001  # compacted on the way
    probes, _ = planted(rng, data[6_000:], 50)
    for w, g in zip(
        exact.search(probes, ["big"], 10, GATE, PER_SUBJECT),
        index.search(probes, ["big"], 10, GATE, PER_SUBJECT),
        strict=True,
    ):
        same(g, w)
    assert index.exact_fallbacks == 0


def test_hamming_radius_keeps_the_promised_miss_rate():
    # Templates at exactly the threshold: the share outside the radius is at most the miss probability.
    rng = np.random.default_rng(104)
    miss = 0.05
    index = MemoryIndex(DIM, sketch_bits=256, miss_probability=miss, seed=9)
    n = 20_000
    probes, templates = unit(rng, n), unit(rng, n)
    templates -= (templates * probes).sum(1, keepdims=True) * probes
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    at = GATE + 1e-3
    templates = (at * probes + np.sqrt(1 - at**2) * templates).astype(np.float32)
    a, b = index.encode(probes), index.encode(templates)
    dist = np.unpackbits(a ^ b, axis=1).sum(1)
    half = np.unpackbits(a[:, :16] ^ b[:, :16], axis=1).sum(1)
    r1, r2 = index.radii(GATE)
    missed = np.mean((half > r1) | (dist > r2))
    assert missed <= miss * 1.2
    assert hamming_radius(0.3, 512, 1e-6) > hamming_radius(0.5, 512, 1e-6) > hamming_radius(0.7, 512, 1e-6)
    assert hamming_radius(-1.0, 512, 1e-6) == 512
