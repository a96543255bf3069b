"""The 1:1 threshold for one comparison: by portrait source and by the portrait's size.

Impostors score higher against small, printed or chip-compressed portraits than against the photo
pairs of the main calibration (docs/accuracy-documents.md), so docverify decides with the threshold
calibrated for the source it compared against and the band of portrait size the portrait falls in
(``facegate calibrate --documents``). A portrait smaller than the smallest calibrated band has no
threshold: the comparison is refused (INCONCLUSIVE, PORTRAIT_QUALITY_TOO_LOW), never judged with a
threshold measured on larger portraits. No calibration file for the model version: no threshold at
all (INCONCLUSIVE, SERVICE_UNAVAILABLE), as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facegate.thresholds import SourceThresholds, load_source_thresholds
from facegate.v1 import common_pb2, docverify_pb2
from services.runtime.errors import FailedPrecondition

R = common_pb2.ReasonCode
SOURCE = docverify_pb2.PortraitSource
QC = common_pb2.QualityCheck


def calibrated_source(source: int, image_format: str | None = None) -> str:
    """The calibration key of a portrait: DG2s by image format, since JPEG 2000 and JPEG degrade differently."""
    if source == SOURCE.PORTRAIT_SOURCE_DG2:
        return "dg2_jpeg2000" if image_format == "JPEG2000" else "dg2_jpeg"
    return "page_scan" if source == SOURCE.PORTRAIT_SOURCE_PAGE_SCAN else "image"


@dataclass(frozen=True)
class Calibration:
    """The calibration for one comparison, checked before any work (an uncalibrated FAR fails fast)."""

    thresholds: SourceThresholds
    source: str
    far: float

    @classmethod
    def load(cls, model_version: str, source: str, far: float | None, directory: Path) -> Calibration | str:
        """The calibration, or why there is none (a fail-closed reason message)."""
        try:
            thresholds = load_source_thresholds(model_version, directory)
            return cls(thresholds, source, thresholds.check_far(source, far))
        except FailedPrecondition as exc:
            return exc.message

    def judge(
        self, portrait_quality: common_pb2.Quality
    ) -> tuple[float | None, docverify_pb2.ThresholdOrigin | str]:
        """(threshold, origin) for this portrait's size; (None, why) when no band holds it."""
        size = inter_eye_px(portrait_quality)
        bands = self.thresholds.bands(self.source)
        band = self.thresholds.band(self.source, size) if size is not None else None
        if band is None:
            measured = "not measured" if size is None else f"{size:.1f} px"
            return None, (
                f"portrait eye distance {measured}: smaller than the smallest calibrated {self.source} "
                f"portrait ({bands[0].min_inter_eye_px:g} px), so no threshold applies"
            )
        point = band.at_far(self.far)
        assert point is not None  # check_far: every band offers the FAR
        origin = docverify_pb2.ThresholdOrigin(
            source=self.source,
            min_inter_eye_px=band.min_inter_eye_px,
            max_inter_eye_px=band.max_inter_eye_px or 0.0,
            portrait_inter_eye_px=size,
            measured_far=point.measured_far or 0.0,
            measured_tar=point.tar or 0.0,
            calibrated_on=self.thresholds.calibrated_on,
        )
        return point.threshold, origin


def inter_eye_px(quality: common_pb2.Quality) -> float | None:
    """The portrait's measured eye distance (detection's measure), None if it was not measured."""
    return next((m.value for m in quality.measures if m.check == QC.QUALITY_CHECK_INTER_EYE_DISTANCE), None)
