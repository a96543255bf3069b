"""In-process exact vector index, kept in step with Milvus (which stays the system of record).

Why: Milvus Lite searches with a Python pass over every row (~42 ms at 100k templates), too slow for
a kiosk. One float32 matrix product over unit vectors is exact (recall 1.0) and takes a few ms at
100k x 128. The service rebuilds this index from Milvus at start and changes it only after Milvus
acknowledged a write, inside the same RPC, so an OK Enroll is searchable and an OK Remove is gone.

Large lists (``sketch_min_templates`` and more, e.g. 1M templates, where one float32 scan reads
512 MB per probe) are searched through a **threshold-safe sign sketch**: every template also keeps
``bits`` sign bits of random hyperplane projections (SimHash; 2048 bits = 256 bytes). For a probe
and a template at angle theta, each hyperplane separates them independently with probability
theta/pi, so their Hamming distance is Binomial(bits, theta/pi) whatever the data. A search scans
the first 512 bits of every row, then each next 512 only for the rows still in (staged, so most
rows cost 64 bytes), keeps every row within the Hamming radius that a template *at the threshold*
stays inside with probability 1 - ``miss_probability`` (union bound over the stages; a template
above the threshold even more surely), and scores those candidates exactly in float32. Scores, the threshold and the
ranking therefore come from exact scores; a template at or above the threshold is missed with
probability at most ``miss_probability`` (1e-6 by default, per template, at the threshold itself).
When the threshold is so low that the radius would admit more than ``max_candidates`` rows (e.g. a
threshold of -1), the search falls back to the exact scan: never a silent approximation.

Concurrency: writers hold ``_lock``; a search takes a snapshot of the arrays under the lock and
computes outside it. Removal clears the row's ``live`` flag in place, so it reaches every snapshot
a later search can take; growth and compaction copy into new arrays under the same lock.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

import faiss
import numpy as np


@dataclass(frozen=True)
class Hit:
    watchlist: str
    subject_id: str
    template_id: str
    score: float


@functools.lru_cache(maxsize=256)
def hamming_radius(threshold: float, bits: int, miss_probability: float) -> int:
    """Smallest radius r with P(Binomial(bits, theta/pi) > r) <= miss_probability, where theta is
    the angle of cosine ``threshold`` (lowered by 1e-3 against float rounding)."""
    t = min(1.0, max(-1.0, threshold - 1e-3))
    p = math.acos(t) / math.pi
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return bits
    logs = [
        math.lgamma(bits + 1)
        - math.lgamma(i + 1)
        - math.lgamma(bits - i + 1)
        + i * math.log(p)
        + (bits - i) * math.log1p(-p)
        for i in range(bits + 1)
    ]
    tail = 0.0
    for r in range(bits, -1, -1):  # tail = P(X > r - 1) after adding term r
        tail += math.exp(logs[r])
        if tail > miss_probability:
            return r
    return 0


class _ListIndex:
    """The templates of one watchlist: a growable matrix, its sign sketches and parallel id arrays."""

    def __init__(self, dimension: int, stage_bytes: int, stages: int, capacity: int = 1024) -> None:
        self.dimension = dimension
        self.stage_bytes = stage_bytes
        self.stages = stages
        self.vectors = np.zeros((capacity, dimension), dtype=np.float32)
        # One array per stage of the sketch: the first is scanned in full, the others only for the
        # rows that passed the stages before (contiguous, so a stage gathers only its own bytes).
        self.codes = tuple(np.zeros((capacity, stage_bytes), dtype=np.uint8) for _ in range(stages))
        self.live = np.zeros(capacity, dtype=bool)
        self.subjects = np.empty(capacity, dtype=object)
        self.templates = np.empty(capacity, dtype=object)
        self.n = 0
        self.dead = 0
        self.rows_of: dict[str, list[int]] = {}

    def _resize(self, capacity: int) -> None:
        keep = np.flatnonzero(self.live[: self.n])
        vectors = np.zeros((capacity, self.dimension), dtype=np.float32)
        codes = tuple(np.zeros((capacity, self.stage_bytes), dtype=np.uint8) for _ in range(self.stages))
        live = np.zeros(capacity, dtype=bool)
        subjects = np.empty(capacity, dtype=object)
        templates = np.empty(capacity, dtype=object)
        m = len(keep)
        vectors[:m] = self.vectors[keep]
        for new, old in zip(codes, self.codes, strict=True):
            new[:m] = old[keep]
        live[:m] = True
        subjects[:m] = self.subjects[keep]
        templates[:m] = self.templates[keep]
        self.vectors, self.codes, self.live = vectors, codes, live
        self.subjects, self.templates = subjects, templates
        self.n, self.dead = m, 0
        self.rows_of = {}
        for row in range(m):
            self.rows_of.setdefault(subjects[row], []).append(row)

    def add(self, subject: str, template_ids: list[str], vectors: np.ndarray, codes: np.ndarray) -> None:
        k = len(template_ids)
        if self.n + k > len(self.live):
            self._resize(max(2 * len(self.live), self.n - self.dead + k + 1024))
        rows = range(self.n, self.n + k)
        self.vectors[self.n : self.n + k] = vectors
        self.set_codes(self.n, codes)
        self.subjects[self.n : self.n + k] = subject
        self.templates[self.n : self.n + k] = template_ids
        self.live[self.n : self.n + k] = True
        self.rows_of.setdefault(subject, []).extend(rows)
        self.n += k

    def set_codes(self, row: int, codes: np.ndarray) -> None:
        b = self.stage_bytes
        for i, stage in enumerate(self.codes):
            stage[row : row + len(codes)] = codes[:, i * b : (i + 1) * b]

    def remove(self, subject: str) -> int:
        rows = self.rows_of.pop(subject, [])
        for row in rows:
            self.live[row] = False
        self.dead += len(rows)
        if self.dead > 4096 and self.dead > self.n // 2:
            self._resize(len(self.live))
        return len(rows)


class MemoryIndex:
    """Cosine search over unit vectors, one matrix per watchlist: exact for small lists, the
    threshold-safe sign sketch plus an exact re-score for lists of ``sketch_min_templates`` or more."""

    def __init__(
        self,
        dimension: int,
        *,
        sketch_bits: int = 2048,
        sketch_min_templates: int = 200_000,
        miss_probability: float = 1e-6,
        max_candidates: int = 65_536,
        seed: int | None = None,
    ) -> None:
        # Stages of 512 bits (or two halves of a shorter sketch).
        self.stages = sketch_bits // 512 if sketch_bits % 512 == 0 and sketch_bits >= 1024 else 2
        if sketch_bits % (8 * self.stages):
            raise ValueError("sketch_bits must split into whole bytes per stage")
        self.stage_bytes = sketch_bits // 8 // self.stages
        self.dimension = dimension
        self.sketch_bits = sketch_bits
        self.sketch_min_templates = sketch_min_templates
        self.miss_probability = miss_probability
        self.max_candidates = max_candidates
        # Random hyperplanes, independent of the data: that independence is what the miss bound needs.
        rng = np.random.default_rng(seed)
        self._planes = rng.standard_normal((dimension, sketch_bits)).astype(np.float32)
        self._lists: dict[str, _ListIndex] = {}
        self._lock = threading.Lock()
        self.sketch_searches = 0  # probes answered through the sketch (tests and the benchmark read it)
        self.exact_fallbacks = 0  # probes on a large list whose threshold admitted too many rows

    def encode(self, vectors: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        """Sign sketches (packed bits) of unit vectors."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        out = np.empty((len(vectors), self.sketch_bits // 8), dtype=np.uint8)
        for lo in range(0, len(vectors), chunk):
            out[lo : lo + chunk] = np.packbits(vectors[lo : lo + chunk] @ self._planes > 0, axis=1)
        return out

    def add(self, watchlist: str, subject: str, template_ids: list[str], vectors: np.ndarray) -> None:
        codes = self.encode(vectors)
        with self._lock:
            index = self._lists.get(watchlist)
            if index is None:
                index = self._lists[watchlist] = _ListIndex(self.dimension, self.stage_bytes, self.stages)
            index.add(subject, template_ids, vectors, codes)

    def load(self, watchlist: str, subjects: list[str], template_ids: list[str], vectors: np.ndarray) -> None:
        """Replace one list's contents in bulk (start-up rebuild from Milvus)."""
        n = len(template_ids)
        index = _ListIndex(self.dimension, self.stage_bytes, self.stages, capacity=max(1024, n + 1024))
        index.vectors[:n] = vectors
        for lo in range(0, n, 65_536):
            index.set_codes(lo, self.encode(vectors[lo : lo + 65_536]))
        index.subjects[:n] = subjects
        index.templates[:n] = template_ids
        index.live[:n] = True
        index.n = n
        for row, subject in enumerate(subjects):
            index.rows_of.setdefault(subject, []).append(row)
        with self._lock:
            self._lists[watchlist] = index

    def total(self) -> int:
        with self._lock:
            return sum(idx.n - idx.dead for idx in self._lists.values())

    def remove_subject(self, watchlist: str, subject: str) -> int:
        with self._lock:
            index = self._lists.get(watchlist)
            return index.remove(subject) if index else 0

    def drop_list(self, watchlist: str) -> None:
        with self._lock:
            self._lists.pop(watchlist, None)

    def template_count(self, watchlist: str) -> int:
        with self._lock:
            index = self._lists.get(watchlist)
            return 0 if index is None else index.n - index.dead

    def memory_bytes(self) -> int:
        """Bytes of the vector, sketch and flag arrays (capacity included; ids not counted)."""
        with self._lock:
            return sum(
                i.vectors.nbytes + sum(c.nbytes for c in i.codes) + i.live.nbytes
                for i in self._lists.values()
            )

    def radii(self, threshold: float) -> tuple[int, ...]:
        """Hamming radius after each stage (over the bits seen so far); each stage may miss a template
        at the threshold with at most miss_probability / stages (union bound)."""
        share = self.miss_probability / self.stages
        bits = self.stage_bytes * 8
        return tuple(hamming_radius(float(threshold), bits * (k + 1), share) for k in range(self.stages))

    def _candidates(
        self, code: np.ndarray, codes: tuple[np.ndarray, ...], n: int, radii: tuple[int, ...]
    ) -> np.ndarray | None:
        """Rows whose sketch lies within the radii of the probe's, or None when there are too many.

        Stage 1 scans its bytes of every row; each later stage adds its bytes' distance for the rows
        still in, and keeps those within the radius of all the bits seen so far."""
        b = self.stage_bytes
        dis = np.empty(n, dtype=np.int32)
        part = np.ascontiguousarray(code[:b])
        faiss.hammings(faiss.swig_ptr(part), faiss.swig_ptr(codes[0]), 1, n, b, faiss.swig_ptr(dis))
        rows = np.flatnonzero(dis <= radii[0])
        dis = dis[rows]
        for k in range(1, self.stages):
            if len(rows) > 16 * self.max_candidates:
                return None
            sub = np.ascontiguousarray(codes[k][rows])
            more = np.empty(len(rows), dtype=np.int32)
            part = np.ascontiguousarray(code[k * b : (k + 1) * b])
            faiss.hammings(faiss.swig_ptr(part), faiss.swig_ptr(sub), 1, len(rows), b, faiss.swig_ptr(more))
            dis += more
            keep = dis <= radii[k]
            rows, dis = rows[keep], dis[keep]
        return None if len(rows) > self.max_candidates else rows

    def search(
        self, probes: np.ndarray, watchlists: list[str], top_k: int, threshold: float, per_subject: int
    ) -> list[list[Hit]]:
        """Best ``top_k`` subjects (one hit each, its best template) per probe, score >= threshold.

        ``per_subject`` is the most templates a subject can have: the best ``top_k * per_subject``
        rows always hold the best template of each of the best ``top_k`` subjects. Scores are exact
        float32 inner products on every path.
        """
        with self._lock:
            snaps = [
                (
                    name,
                    idx.vectors,
                    idx.codes,
                    idx.live,
                    idx.subjects,
                    idx.templates,
                    idx.n - idx.dead,
                    idx.n,
                )
                for name in watchlists
                if (idx := self._lists.get(name)) is not None and idx.n > 0
            ]
        results: list[list[Hit]] = [[] for _ in range(len(probes))]
        want = top_k * per_subject
        radii = self.radii(threshold)
        probe_codes: np.ndarray | None = None
        for name, vectors, codes, live, subjects, templates, size, n in snaps:
            exact: np.ndarray | None = None
            for q in range(len(probes)):
                rows: np.ndarray | None = None
                if size >= self.sketch_min_templates and radii[-1] < self.sketch_bits:
                    if probe_codes is None:
                        probe_codes = self.encode(probes)
                    rows = self._candidates(probe_codes[q], codes, n, radii)
                    if rows is None:
                        self.exact_fallbacks += 1
                    else:
                        self.sketch_searches += 1
                if rows is None:
                    if exact is None:
                        exact = vectors[:n] @ probes.T  # (n, q): all probes at once
                    col = exact[:, q]
                    rows = np.arange(n)
                else:
                    col = vectors[rows] @ probes[q]
                passing = (col >= threshold) & live[rows]
                count = int(np.count_nonzero(passing))
                if count <= want:
                    best = np.flatnonzero(passing)  # the usual case: few rows reach a real threshold
                else:
                    masked = np.where(passing, col, -np.inf)
                    best = np.argpartition(masked, len(col) - want)[len(col) - want :]
                best = best[np.argsort(-col[best], kind="stable")]
                seen: set[str] = set()
                for i in best:
                    row = rows[i]
                    subject = subjects[row]
                    if subject in seen:
                        continue
                    # A removal that landed after the snapshot was taken still hides the row.
                    if not live[row]:
                        continue
                    seen.add(subject)
                    results[q].append(Hit(name, subject, templates[row], float(col[i])))
                    if len(seen) >= top_k:
                        break
        for q, hits in enumerate(results):
            hits.sort(key=lambda h: -h.score)
            results[q] = hits[:top_k]
        return results
