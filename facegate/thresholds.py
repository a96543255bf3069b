"""Calibrated decision thresholds, versioned files per embedding model version.

``<model_version>.json`` holds the thresholds for two photos (calibrated on the dev pairs: the
watchlist, the officer's compare); ``<model_version>.sources.json`` holds docverify's, per portrait
source and band of portrait size (calibrated on the document-style set, issue 17). Written by
``facegate calibrate`` (``--pairs`` / ``--documents``) and loaded by every service that decides on
a score (docverify, watchlist, gateway) and by ``facegate eval``. A score from one model version is
never judged with another version's threshold: a missing file is a FailedPrecondition, so
decisions fail closed. Like the proto contracts, the file format belongs to the client layer
(services import it from here); the calibrated files live beside it in ``calibration/``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from facegate.errors import FailedPrecondition, InvalidArgument

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
T = TypeVar("T")


@dataclass(frozen=True)
class OperatingPoint:
    far: float  # target false-accept rate
    threshold: float  # accept when similarity >= threshold
    tar: float | None = None  # true-accept rate measured at this threshold on the calibration pairs
    measured_far: float | None = None


@dataclass(frozen=True)
class Thresholds:
    model_id: str
    model_version: str
    metric: str
    default_far: float
    points: tuple[OperatingPoint, ...]
    calibrated_on: str = ""  # which pairs file, for the record
    extra: dict = field(default_factory=dict)

    def at_far(self, far: float | None = None) -> OperatingPoint:
        """The operating point for ``far`` (default: the shipped default FAR)."""
        wanted = self.default_far if far is None else far
        for point in self.points:
            if abs(point.far - wanted) <= wanted * 1e-6:
                return point
        offered = ", ".join(f"{p.far:g}" for p in self.points)
        raise InvalidArgument(f"no threshold calibrated for FAR {wanted:g}; calibrated: {offered}")


def path_for(model_version: str, directory: Path = CALIBRATION_DIR) -> Path:
    return directory / f"{model_version}.json"


def _load(path: Path, what: str, model_version: str, command: str, build: Callable[[dict], T]) -> T:
    """A calibration file, parsed; missing -> FailedPrecondition (the caller fails closed).

    Services ask on every decision, so the parsed file is kept until the file changes (its size or
    modification time): a recalibration is picked up at the next decision, without a restart.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise FailedPrecondition(
            f"no calibrated {what} for model version {model_version[:12]}…; run `{command}`"
        ) from None
    return _parsed(path, stat.st_mtime_ns, stat.st_size, build)


@functools.lru_cache(maxsize=32)
def _parsed(path: Path, mtime_ns: int, size: int, build: Callable[[dict], T]) -> T:
    return build(json.loads(path.read_text()))


def _write(path: Path, calibration: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(calibration), indent=2, sort_keys=True) + "\n")
    return path


def load_thresholds(model_version: str, directory: Path = CALIBRATION_DIR) -> Thresholds:
    path = path_for(model_version, directory)
    return _load(path, "thresholds", model_version, "facegate calibrate", _thresholds)


def _thresholds(raw: dict) -> Thresholds:
    points = tuple(OperatingPoint(**p) for p in raw.pop("points"))
    return Thresholds(points=points, **raw)


def write_thresholds(thresholds: Thresholds, directory: Path = CALIBRATION_DIR) -> Path:
    return _write(path_for(thresholds.model_version, directory), thresholds)


# ---- per portrait source and size (document portraits) -------------------------------------------

#: Portrait sources with their own calibration: what docverify compared the live face against.
PORTRAIT_SOURCES = ("image", "dg2_jpeg", "dg2_jpeg2000", "page_scan")


@dataclass(frozen=True)
class SizeBand:
    """Thresholds for portraits whose eyes lie ``min_inter_eye_px`` (inclusive) to
    ``max_inter_eye_px`` (exclusive; None: no upper edge) pixels apart on the image detected on."""

    min_inter_eye_px: float
    max_inter_eye_px: float | None
    points: tuple[OperatingPoint, ...]
    genuine: int = 0  # genuine pairs the band was calibrated on
    impostors: int = 0  # impostor comparisons it was calibrated on

    def contains(self, inter_eye_px: float) -> bool:
        upper = self.max_inter_eye_px
        return inter_eye_px >= self.min_inter_eye_px and (upper is None or inter_eye_px < upper)

    def at_far(self, far: float) -> OperatingPoint | None:
        return next((p for p in self.points if abs(p.far - far) <= far * 1e-6), None)

    def label(self) -> str:
        upper = "+" if self.max_inter_eye_px is None else f"-{self.max_inter_eye_px:g}"
        return f"{self.min_inter_eye_px:g}{upper} px between the eyes"


@dataclass(frozen=True)
class SourceThresholds:
    """Thresholds per portrait source and band of portrait size, for one model version.

    Document portraits are small, frontal and compressed or printed; impostors score higher against
    them than against the live-vs-photo pairs of the main calibration, and more so the smaller the
    portrait. A portrait smaller than a source's smallest band has no calibrated threshold, so the
    comparison is refused rather than judged with another band's (docs/accuracy-documents.md).
    """

    model_version: str
    sources: dict[str, tuple[SizeBand, ...]]  # ascending bands, contiguous
    default_far: float = 1e-3
    calibrated_on: str = ""
    extra: dict = field(default_factory=dict)

    def bands(self, source: str) -> tuple[SizeBand, ...]:
        if source not in self.sources:
            raise FailedPrecondition(
                f"no calibrated thresholds for {source} portraits (model version {self.model_version[:12]}…); "
                "run `facegate calibrate --documents`"
            )
        return self.sources[source]

    def band(self, source: str, inter_eye_px: float) -> SizeBand | None:
        """The band holding a portrait of this size; None below the smallest calibrated band."""
        return next((b for b in self.bands(source) if b.contains(inter_eye_px)), None)

    def fars(self, source: str) -> set[float]:
        """FARs every band of ``source`` has a threshold for."""
        sets = [{p.far for p in b.points} for b in self.bands(source)]
        return set.intersection(*sets) if sets else set()

    def check_far(self, source: str, far: float | None) -> float:
        """The FAR to decide at (``far`` or the default); InvalidArgument unless ``source`` offers it."""
        wanted = self.default_far if far is None else far
        offered = sorted(self.fars(source))
        if not any(abs(f - wanted) <= wanted * 1e-6 for f in offered):
            listed = ", ".join(f"{f:g}" for f in offered)
            raise InvalidArgument(
                f"no threshold calibrated for FAR {wanted:g} on {source} portraits; calibrated: {listed}"
            )
        return wanted


def sources_path_for(model_version: str, directory: Path = CALIBRATION_DIR) -> Path:
    return directory / f"{model_version}.sources.json"


def load_source_thresholds(model_version: str, directory: Path = CALIBRATION_DIR) -> SourceThresholds:
    path = sources_path_for(model_version, directory)
    command = "facegate calibrate --documents"
    return _load(path, "portrait-source thresholds", model_version, command, _source_thresholds)


def _source_thresholds(raw: dict) -> SourceThresholds:
    sources = {
        name: tuple(
            SizeBand(**{**band, "points": tuple(OperatingPoint(**p) for p in band["points"])})
            for band in bands
        )
        for name, bands in raw.pop("sources").items()
    }
    return SourceThresholds(sources=sources, **raw)


def write_source_thresholds(thresholds: SourceThresholds, directory: Path = CALIBRATION_DIR) -> Path:
    return _write(sources_path_for(thresholds.model_version, directory), thresholds)
