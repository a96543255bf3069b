"""Calibrated decision thresholds, one versioned file per embedding model version.

Written by ``facegate calibrate`` and loaded by every service that decides on a score
(docverify, watchlist, gateway) and by ``facegate eval``. A score from one model version is
never judged with another version's threshold: a missing file is a FailedPrecondition, so
decisions fail closed. Like the proto contracts, the file format belongs to the client layer
(services import it from here); the calibrated files live beside it in ``calibration/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from facegate.errors import FailedPrecondition, InvalidArgument

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"


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


def load_thresholds(model_version: str, directory: Path = CALIBRATION_DIR) -> Thresholds:
    path = path_for(model_version, directory)
    if not path.exists():
        raise FailedPrecondition(
            f"no calibrated thresholds for model version {model_version[:12]}…; run `facegate calibrate`"
        )
    raw = json.loads(path.read_text())
    points = tuple(OperatingPoint(**p) for p in raw.pop("points"))
    return Thresholds(points=points, **raw)


def write_thresholds(thresholds: Thresholds, directory: Path = CALIBRATION_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = path_for(thresholds.model_version, directory)
    data = asdict(thresholds)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
