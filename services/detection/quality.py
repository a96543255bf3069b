"""Per-face quality verdict: each check a number, its bounds, pass/fail and a reason.

Photometric checks (sharpness, brightness, contrast) run on a normalised face patch: the face
warped to the canonical template at a fixed 64x64 with no margin. That makes them independent
of how large the face is in the frame and of head roll, and keeps hair and background out of
the statistics. Bounds are configuration (see QualityThresholds); why each default was chosen
is in docs/detection.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facegate.v1 import common_pb2
from services.detection.alignment import align_face
from services.detection.detector import RawFace
from services.detection.pose import estimate_pose

Check = common_pb2.QualityCheck

#: Side of the normalised patch the photometric checks use.
PATCH = 64
#: The inner part of that patch (rows, cols) that is skin: brows to chin, cheek to cheek.
INNER = (slice(10, 60), slice(8, 56))


@dataclass(frozen=True)
class QualityThresholds:
    min_inter_eye_px: float = 60.0
    max_yaw_deg: float = 30.0
    max_pitch_deg: float = 25.0
    max_roll_deg: float = 15.0
    min_sharpness: float = 700.0
    min_brightness: float = 50.0
    max_brightness: float = 210.0
    min_contrast: float = 15.0
    min_in_frame: float = 0.98
    min_confidence: float = 0.95


def face_patch(rgb: np.ndarray, face: RawFace) -> np.ndarray:
    """Grey 64x64 patch of the face in canonical pose (float64 luminance, 0..255)."""
    patch = align_face(rgb, face.landmarks, PATCH, 0.0)
    return cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float64)


def in_frame_fraction(box: tuple[float, float, float, float], width: int, height: int) -> float:
    x1, y1, x2, y2 = box
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    if area <= 0:
        return 0.0
    ix = max(0.0, min(x2, width) - max(x1, 0.0))
    iy = max(0.0, min(y2, height) - max(y1, 0.0))
    return float(ix * iy / area)


def _measure(
    check: int,
    value: float,
    lo: float | None,
    hi: float | None,
    ok_text: str,
    low_text: str = "",
    high_text: str = "",
) -> common_pb2.QualityMeasure:
    passed = (lo is None or value >= lo) and (hi is None or value <= hi)
    if passed:
        detail = ok_text
    elif lo is not None and value < lo:
        detail = f"{low_text} ({value:.3g} < {lo:g})"
    else:
        detail = f"{high_text} ({value:.3g} > {hi:g})"
    m = common_pb2.QualityMeasure(check=check, value=float(value), passed=passed, detail=detail)
    if lo is not None:
        m.min = float(lo)
    if hi is not None:
        m.max = float(hi)
    return m


def assess(rgb: np.ndarray, face: RawFace, t: QualityThresholds) -> common_pb2.Quality:
    """Measure one face of ``rgb`` (the full-resolution image) against the thresholds."""
    height, width = rgb.shape[:2]
    pose = estimate_pose(face.landmarks)
    gray = face_patch(rgb, face)
    inner = gray[INNER]
    sharpness = float(cv2.Laplacian(inner, cv2.CV_64F, ksize=3).var())
    brightness = float(inner.mean())
    contrast = float(inner.std())
    in_frame = in_frame_fraction(face.box, width, height)
    measures = [
        _measure(
            Check.QUALITY_CHECK_INTER_EYE_DISTANCE,
            pose.inter_eye,
            t.min_inter_eye_px,
            None,
            "eyes far enough apart",
            "face too small or too far from the camera: step closer",
        ),
        _measure(
            Check.QUALITY_CHECK_YAW,
            abs(pose.yaw),
            None,
            t.max_yaw_deg,
            "facing the camera",
            high_text="head turned sideways: look straight at the camera",
        ),
        _measure(
            Check.QUALITY_CHECK_ROLL,
            abs(pose.roll),
            None,
            t.max_roll_deg,
            "head upright",
            high_text="head tilted: hold your head straight",
        ),
        _measure(
            Check.QUALITY_CHECK_PITCH,
            abs(pose.pitch),
            None,
            t.max_pitch_deg,
            "head level",
            high_text="head tipped up or down: look straight at the camera",
        ),
        _measure(
            Check.QUALITY_CHECK_SHARPNESS,
            sharpness,
            t.min_sharpness,
            None,
            "face in focus",
            "face blurred: hold still",
        ),
        _measure(
            Check.QUALITY_CHECK_BRIGHTNESS,
            brightness,
            t.min_brightness,
            t.max_brightness,
            "face well lit",
            "face too dark",
            "face overexposed",
        ),
        _measure(
            Check.QUALITY_CHECK_CONTRAST,
            contrast,
            t.min_contrast,
            None,
            "enough contrast",
            "face washed out or flat: check lighting",
        ),
        _measure(
            Check.QUALITY_CHECK_FACE_IN_FRAME,
            in_frame,
            t.min_in_frame,
            None,
            "whole face in the frame",
            "face partly outside the frame: move to the centre",
        ),
        _measure(
            Check.QUALITY_CHECK_DETECTOR_CONFIDENCE,
            face.confidence,
            t.min_confidence,
            None,
            "clearly a face",
            "face not clearly visible: remove obstructions",
        ),
    ]
    failed = [m.check for m in measures if not m.passed]
    return common_pb2.Quality(acceptable=not failed, measures=measures, failed=failed)
