"""How often watchlist screening flags a traveller who is on no list: ``python -m tools.screening_rates``.

The gate screens every traveller's live template against the chosen lists at one calibrated
threshold per comparison (``FACEGATE_GATEWAY_SCREEN_FAR``). Every listed person is one more
comparison, so the chance that an innocent traveller scores over the threshold against *someone*
grows with the list. A border operator sizes the list and the threshold together: this measures
both rates on real faces.

Input: every dev photo under ``../shared/data/faces/images`` through the detection and embedding
services (started on loopback, as ``facegate eval`` does; the evaluation policy: the most central
face, any quality). The list: each person's first photo (name order), one template per person.
Each photo is then screened against everyone else on the list (its own person left out): the share
flagged is the false-alarm rate per traveller (FPIR) at a list of that many people. The share of
each person's *other* photos that find their own entry is the hit rate (TPIR) of a listed traveller.
Rows for larger lists are projections, ``1 - (1 - FAR)^N`` with the per-comparison FAR measured here,
which assumes comparisons are independent; they are labelled as such.

Writes ``bench/results/screening.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO.parent / "shared" / "data" / "faces" / "images"
REPORT = REPO / "bench" / "results" / "screening.md"
#: Thresholds measured besides the calibrated points: stricter ones, for large lists.
EXTRA_THRESHOLDS = (0.70, 0.75, 0.80)
#: List sizes the projection rows show.
PROJECTED_SIZES = (1_000, 10_000, 100_000, 1_000_000)
#: Fewest impostor comparisons over a threshold for its measured FAR to be projected at all.
MIN_EVENTS = 10


@dataclass(frozen=True)
class Rates:
    threshold: float
    over: int  # impostor comparisons at or over the threshold
    comparisons: int  # impostor comparisons in all
    flagged: float  # travellers on no list with at least one candidate at or over the threshold
    hits_per_traveller: float  # mean impostor candidates at or over the threshold per traveller
    found: float  # listed travellers (another photo of them) whose own entry is at or over it

    @property
    def comparison_far(self) -> float:
        return self.over / self.comparisons


def screening_rates(rows: np.ndarray, people: list[str], threshold: float) -> Rates:
    """Rates for unit ``rows`` of ``people`` (one name per row): each person's first row is the
    list entry; every row is screened against the other people's entries."""
    names = sorted(set(people))
    owner = np.asarray(people)
    entries = np.array([int(np.flatnonzero(owner == n)[0]) for n in names])
    scores = rows @ rows[entries].T  # every photo against every list entry
    own = owner[:, None] == np.asarray(names)[None, :]
    impostor = np.where(own, -np.inf, scores)
    over = impostor >= threshold
    listed = np.ones(len(rows), bool)
    listed[entries] = False  # a person's other photos: travellers who are on the list
    genuine = np.where(own, scores, -np.inf).max(axis=1)
    return Rates(
        threshold=threshold,
        over=int(over.sum()),
        comparisons=int((~own).sum()),
        flagged=float(over.any(axis=1).mean()),
        hits_per_traveller=float(over.sum(axis=1).mean()),
        found=float((genuine[listed] >= threshold).mean()) if listed.any() else float("nan"),
    )


def projected_flagged(comparison_far: float, list_size: int) -> float:
    """The share of innocent travellers flagged at ``list_size`` people, comparisons independent."""
    return float(1.0 - (1.0 - comparison_far) ** list_size)


def embed_all(images: Path, workers: int) -> tuple[np.ndarray, list[str], str, int]:
    """Unit templates of every photo with a face, their people, the model version, photos tried."""
    from facegate.evaluation_pipeline import connect
    from facegate.launcher import local_services

    paths = sorted(p.relative_to(images).as_posix() for p in images.glob("*/*.jpg"))
    with (
        local_services(("detection", "embedding"), {}) as targets,
        connect(targets["detection"], targets["embedding"]) as client,
    ):
        results = client.embed_images(images, paths, workers=workers, progress=False)
        version = client.spec.model_version
    kept = [(p, r.vector) for p, r in results.items() if r.vector is not None]
    rows = np.stack([v for _, v in kept]).astype(np.float64)
    return rows, [p.split("/")[0] for p, _ in kept], version, len(paths)


def render(table: list[Rates], calibrated: dict[float, float], meta: dict[str, str]) -> str:
    far_of = {round(t, 6): f for f, t in calibrated.items()}
    lines = [
        "# Watchlist screening: false alarms and hits against a list of real faces",
        "",
        "Generated by `python -m tools.screening_rates` (tools/screening_rates.py); what it measures and how: "
        "its docstring.",
        "",
        f"- machine: {meta['machine']}; git {meta['git']}; {meta['date']}",
        f"- input: {meta['photos']} dev photos with a face (of {meta['tried']}), {meta['people']} people; the list "
        f"holds each person's first photo; model {meta['model'][:12]}…",
        "",
        f"| threshold | calibrated FAR per comparison | measured FAR per comparison (over / all) | innocent "
        f"travellers flagged (list of {meta['people']}) | false candidates per traveller | listed travellers found |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in table:
        far = far_of.get(round(r.threshold, 6))
        lines.append(
            f"| {r.threshold:.4f} | {f'{far:g}' if far else '-'} | {r.comparison_far:.2e} ({r.over:,} / "
            f"{r.comparisons:,}) | {r.flagged * 100:.1f} % | {r.hits_per_traveller:.2f} | {r.found * 100:.1f} % |"
        )
    lines += [
        "",
        "Projected share of innocent travellers flagged at larger lists (measured FAR per comparison, "
        f"comparisons taken as independent; not projected where fewer than {MIN_EVENTS} impostor "
        "comparisons were over the threshold):",
        "",
        "| threshold | " + " | ".join(f"{n:,} people" for n in PROJECTED_SIZES) + " |",
        "|---:|" + "---:|" * len(PROJECTED_SIZES),
    ]
    for r in table:
        if r.over < MIN_EVENTS:
            cells = " | ".join("–" for _ in PROJECTED_SIZES)
        else:
            cells = " | ".join(
                f"{projected_flagged(r.comparison_far, n) * 100:.1f} %" for n in PROJECTED_SIZES
            )
        lines.append(f"| {r.threshold:.4f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from facegate.thresholds import load_thresholds
    from tools.kiosk_frr import git_state

    parser = argparse.ArgumentParser(
        prog="python -m tools.screening_rates", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    rows, people, version, tried = embed_all(args.images, args.workers)
    calibrated = {p.far: p.threshold for p in load_thresholds(version).points}
    thresholds = sorted({*calibrated.values(), *EXTRA_THRESHOLDS})
    table = [screening_rates(rows, people, t) for t in thresholds]
    meta = {
        "machine": f"{platform.machine()}, {platform.platform()}",
        "git": git_state(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "photos": str(len(rows)),
        "tried": str(tried),
        "people": str(len(set(people))),
        "model": version,
    }
    args.out.write_text(render(table, calibrated, meta))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
