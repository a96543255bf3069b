"""The quality policy for the *document portrait*, re-judged from detection's measurements.

The detection service judges every face against bounds made for a gate camera (a live face of
a person a metre away: ISO 19794-5 asks >= 90 px between the eyes, sharp, evenly lit). A
document portrait is a different object: on a photo-page scan it is a 35 x 45 mm print at scan
resolution (specimen pages here: faces 47-170 px wide, 14-60 px between the eyes), printed with
guilloche tints and holograms over it; a chip DG2 image is a compressed ~ 400 x 500 JPEG. Under
the gate bounds nearly every real document portrait would "fail", which would make the quality
verdict meaningless. So docverify keeps detection's *measurements* (one definition of each
measure across the system) and applies its own, documented bounds to the portrait.

Yaw: a portrait the issuing state accepted cannot be retaken at the gate, so refusing it for pose
sends that traveller to an officer at every crossing until the document expires. On the dev
pairs a face turned 20-35 degrees (the other side frontal) matched as often as a frontal one and
impostor scores fell with yaw (docs/docverify.md), so portraits are compared up to
``portrait_max_yaw_deg`` (35) and the calibrated score decides; past ICAO's 5 degrees the measure
passes with a note saying so, and the decision carries it.

Measures the portrait policy does not bound (pitch: rough from five landmarks; face-in-frame: a
DG2 portrait is cropped tightly by design) are reported as measured, with no bounds, and passed.
"""

from __future__ import annotations

from dataclasses import dataclass

from facegate.v1 import common_pb2

QC = common_pb2.QualityCheck
_ANGLES = (QC.QUALITY_CHECK_YAW, QC.QUALITY_CHECK_ROLL, QC.QUALITY_CHECK_PITCH)


#: ICAO 9303 / ISO/IEC 19794-5: a document portrait is frontal within 5 degrees of yaw.
ICAO_MAX_YAW_DEG = 5.0


@dataclass(frozen=True)
class Bounds:
    min: float | None = None
    max: float | None = None
    detail_low: str = ""
    detail_high: str = ""
    #: A value above ``note_above`` passes, with ``note`` as its detail (a departure from the
    #: standard worth recording on the decision, not a reason to refuse the portrait).
    note_above: float | None = None
    note: str = ""


def portrait_bounds(settings: object) -> dict[int, Bounds]:
    """The portrait policy from the service settings (DocverifySettings)."""
    s = settings
    return {
        QC.QUALITY_CHECK_INTER_EYE_DISTANCE: Bounds(
            min=s.portrait_min_inter_eye_px,
            detail_low="portrait too small (eyes too close together in pixels)",
        ),
        QC.QUALITY_CHECK_YAW: Bounds(
            max=s.portrait_max_yaw_deg,
            detail_high="portrait face turned sideways",
            note_above=ICAO_MAX_YAW_DEG,
            note="portrait turned more than ICAO's 5 degrees: compared, the score decides",
        ),
        QC.QUALITY_CHECK_ROLL: Bounds(max=s.portrait_max_roll_deg, detail_high="portrait face tilted"),
        QC.QUALITY_CHECK_SHARPNESS: Bounds(min=s.portrait_min_sharpness, detail_low="portrait blurred"),
        QC.QUALITY_CHECK_CONTRAST: Bounds(min=s.portrait_min_contrast, detail_low="portrait washed out"),
        QC.QUALITY_CHECK_BRIGHTNESS: Bounds(
            min=s.portrait_min_brightness,
            max=s.portrait_max_brightness,
            detail_low="portrait too dark",
            detail_high="portrait too bright",
        ),
        QC.QUALITY_CHECK_DETECTOR_CONFIDENCE: Bounds(
            min=s.portrait_min_confidence, detail_low="portrait face detected with low confidence"
        ),
    }


def judge(measured: common_pb2.Quality, bounds: dict[int, Bounds]) -> common_pb2.Quality:
    """A new verdict from ``measured``'s values under ``bounds`` (checks without bounds pass)."""
    out = common_pb2.Quality()
    for m in measured.measures:
        b = bounds.get(m.check)
        measure = common_pb2.QualityMeasure(check=m.check, value=m.value, passed=True)
        # Angles are signed measurements but bounded by magnitude (common.proto).
        value = abs(m.value) if m.check in _ANGLES else m.value
        if b is not None:
            if b.min is not None:
                measure.min = b.min
                if value < b.min:
                    measure.passed = False
                    measure.detail = b.detail_low
            if b.max is not None:
                measure.max = b.max
                if value > b.max:
                    measure.passed = False
                    measure.detail = b.detail_high
            if measure.passed and b.note_above is not None and value > b.note_above:
                measure.detail = b.note
        out.measures.append(measure)
        if not measure.passed:
            out.failed.append(m.check)
    out.acceptable = len(out.failed) == 0 and len(out.measures) > 0
    return out
