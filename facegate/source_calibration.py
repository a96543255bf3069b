"""Thresholds per portrait source and band of portrait size, from a scored document-style set.

``facegate calibrate --documents`` feeds this the rows ``python -m tools.docset eval`` writes: per
identity and built set, Verify's genuine similarity (live frame vs that identity's document), the
live template, the document's template and the portrait's eye distance in pixels. Impostors are
every live template against every document template of *another* identity, across sets too (two
seeds draw independent photos, pages and degradations), so three sets of 168 identities give about
250,000 impostor comparisons per source instead of 28,000.

Bands split a source's documents by eye distance into equal-count groups: as many as the data
resolves (each band needs ``min_genuine`` genuine pairs and ``min_allowed`` impostors allowed over
its threshold at the default FAR, so one high score cannot set it). The smallest band starts at the
smallest portrait calibrated; smaller portraits get no threshold at all. A FAR is offered for a
source only when every band resolves it.

``held_out`` says how far the method can be trusted on people it was not calibrated on: thresholds
from one half of the identities, error rates measured on the other half.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facegate import evaluation
from facegate.thresholds import OperatingPoint, SizeBand


@dataclass(frozen=True)
class ScoredDocuments:
    """One portrait source's rows: row i is identity i's live frame and document in one built set."""

    identities: np.ndarray  # (n,) identity names
    genuine: np.ndarray  # (n,) Verify's similarity; nan where it could not compare (a reject)
    live: np.ndarray  # (n, d) live templates (zero rows where missing)
    live_ok: np.ndarray  # (n,) bool
    doc: np.ndarray  # (n, d) document templates (zero rows where missing)
    doc_ok: np.ndarray  # (n,) bool
    inter_eye_px: np.ndarray  # (n,) the document portrait's eye distance; nan where not found

    @classmethod
    def from_rows(cls, rows: list[dict]) -> ScoredDocuments:
        """From tools.docset eval rows (keys identity, similarity, live_template, document_template, inter_eye_px)."""
        dim = next((len(r[k]) for r in rows for k in ("live_template", "document_template") if r.get(k)), 128)

        def matrix(key: str) -> tuple[np.ndarray, np.ndarray]:
            ok = np.asarray([bool(r.get(key)) for r in rows], dtype=bool)
            mat = np.asarray([r[key] if r.get(key) else [0.0] * dim for r in rows], dtype=np.float64)
            return mat.reshape(len(rows), dim), ok

        live, live_ok = matrix("live_template")
        doc, doc_ok = matrix("document_template")
        nan = math.nan
        return cls(
            identities=np.asarray([r["identity"] for r in rows]),
            genuine=np.asarray([nan if r.get("similarity") is None else r["similarity"] for r in rows]),
            live=live,
            live_ok=live_ok,
            doc=doc,
            doc_ok=doc_ok,
            inter_eye_px=np.asarray(
                [nan if r.get("inter_eye_px") is None else r["inter_eye_px"] for r in rows], dtype=np.float64
            ),
        )

    def subset(self, keep: np.ndarray) -> ScoredDocuments:
        return ScoredDocuments(
            self.identities[keep],
            self.genuine[keep],
            self.live[keep],
            self.live_ok[keep],
            self.doc[keep],
            self.doc_ok[keep],
            self.inter_eye_px[keep],
        )

    def impostor_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, document index) of every live x document comparison of different identities."""
        usable = (
            self.live_ok[:, None]
            & self.doc_ok[None, :]
            & (self.identities[:, None] != self.identities[None, :])
        )
        sims = self.live @ self.doc.T
        columns = np.broadcast_to(np.arange(len(self.doc)), sims.shape)
        return sims[usable], columns[usable]

    def genuine_scores(self) -> np.ndarray:
        """Verify's genuine similarities, -1 (a reject) where it could not compare."""
        return np.where(np.isnan(self.genuine), -1.0, self.genuine)


@dataclass(frozen=True)
class BandRules:
    fars: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
    default_far: float = 1e-3
    max_bands: int = 3
    min_genuine: int = 60  # genuine pairs per band
    min_allowed: int = 10  # impostors allowed over a band's default-FAR threshold


def _edges(sizes: np.ndarray, k: int) -> list[float]:
    """Lower edges of ``k`` equal-count bands over sorted ``sizes`` (halfway between neighbours, 0.5 px steps)."""
    ordered = np.sort(sizes)
    edges = [math.floor(ordered[0] * 2) / 2]
    for i in range(1, k):
        cut = len(ordered) * i // k
        edges.append(round(float(ordered[cut - 1] + ordered[cut])) / 2)
    return edges


def _band_scores(
    data: ScoredDocuments, low: float, high: float | None, impostors: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) scores of the documents whose portrait size lies in [low, high)."""
    scores, columns = impostors
    inside = _in_band(data.inter_eye_px, low, high)
    return data.genuine_scores()[inside], scores[inside[columns]]


def _in_band(size: np.ndarray, low: float, high: float | None) -> np.ndarray:
    """Which sizes lie in [low, high) (no upper edge when ``high`` is None); NaN never does."""
    return (size >= low) & (size < (np.inf if high is None else high))


def _point(genuine: np.ndarray, impostor: np.ndarray, far: float, floor: float) -> OperatingPoint:
    """The operating point at ``far``, its threshold raised to ``floor`` where that is higher."""
    threshold = max(evaluation.threshold_at_far(impostor, far), floor)
    return OperatingPoint(
        far=far,
        threshold=threshold,
        tar=float(np.mean(genuine >= threshold)),
        measured_far=float(np.mean(impostor >= threshold)),
    )


def _bands(
    data: ScoredDocuments, edges: list[float], impostors: tuple, offered: list[float]
) -> tuple[SizeBand, ...]:
    """Bands from the largest portraits down; no smaller band gets a lower threshold than a larger one.

    A smaller portrait never carries more of a face than a larger one: where a smaller band's own
    threshold comes out lower, that is which identities the sample put there, not the size, so it
    takes the larger band's (the conservative side: its FAR can only fall).
    """
    uppers = [*edges[1:], None]
    floor = dict.fromkeys(offered, -np.inf)
    out = []
    for low, high in reversed(list(zip(edges, uppers, strict=True))):
        genuine, impostor = _band_scores(data, low, high, impostors)
        points = tuple(_point(genuine, impostor, far, floor[far]) for far in offered)
        floor = {p.far: p.threshold for p in points}
        out.append(SizeBand(low, high, points, genuine=len(genuine), impostors=len(impostor)))
    return tuple(reversed(out))


def calibrate_bands(data: ScoredDocuments, rules: BandRules = BandRules()) -> tuple[SizeBand, ...]:
    """The most bands (up to ``rules.max_bands``) that each resolve the default FAR with margin.

    A FAR is offered only when every band has at least 1 / FAR impostor comparisons.
    """
    known = ~np.isnan(data.inter_eye_px)
    if not known.any():
        raise ValueError("no document portrait with a measured size")
    impostors = data.impostor_scores()
    for k in range(rules.max_bands, 0, -1):
        edges = _edges(data.inter_eye_px[known], k)
        counts = [
            _band_scores(data, low, high, impostors)
            for low, high in zip(edges, [*edges[1:], None], strict=True)
        ]
        fewest_genuine = min(len(g) for g, _ in counts)
        fewest_impostors = min(len(i) for _, i in counts)
        if k == 1 or (
            fewest_genuine >= rules.min_genuine and fewest_impostors * rules.default_far >= rules.min_allowed
        ):
            break
    offered = [f for f in rules.fars if fewest_impostors * f >= 1.0]
    if rules.default_far not in offered:
        raise ValueError(f"too few impostor comparisons to resolve FAR {rules.default_far:g}")
    return _bands(data, edges, impostors, offered)


def apply_bands(data: ScoredDocuments, bands: tuple[SizeBand, ...], far: float) -> dict[str, float | int]:
    """What the bands' thresholds at ``far`` do on ``data``: portraits outside every band are refused."""
    threshold = np.full(len(data.identities), np.inf)
    for band in bands:
        point = band.at_far(far)
        inside = _in_band(data.inter_eye_px, band.min_inter_eye_px, band.max_inter_eye_px)
        threshold[inside] = point.threshold if point is not None else np.inf
    scores, columns = data.impostor_scores()
    accepted = scores >= threshold[columns]
    genuine = data.genuine_scores()
    return {
        "genuine": len(genuine),
        "tar": float(np.mean(genuine >= threshold)) if len(genuine) else math.nan,
        "refused_for_size": int(np.sum(np.isinf(threshold) & data.doc_ok)),
        "impostors": len(scores),
        "impostors_accepted": int(accepted.sum()),
        "far": float(accepted.mean()) if len(scores) else math.nan,
    }


def held_out(data: ScoredDocuments, rules: BandRules = BandRules()) -> list[dict]:
    """Two-fold by identity: bands calibrated on one half, applied at the default FAR to the other."""
    names = sorted(set(data.identities.tolist()))
    half = np.asarray([names.index(n) % 2 for n in data.identities])
    out = []
    for train in (0, 1):
        bands = calibrate_bands(data.subset(half == train), rules)
        result = apply_bands(data.subset(half != train), bands, rules.default_far)
        out.append({"calibrated_on_half": train, "bands": [b.label() for b in bands], **result})
    return out
