"""Head pose and plausibility from MTCNN's five landmarks.

Five points cannot give a true 3-D pose, but they give estimates good enough to tell a
traveller "please look at the camera": roll is exact (the eye line), yaw and pitch come from
where the nose tip projects between the eyes and between the eye and mouth lines. The
constants below model an average adult face (inter-eye distance ~63 mm, nose tip ~26 mm in
front of the eye centres); they are rough, so pose limits are set with slack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: tan(yaw) per unit of nose offset from the eye/mouth midline, in half inter-eye distances
#: (half IED ~31.5 mm / nose-tip depth in front of the eye centres ~26 mm).
YAW_GAIN = 1.2
#: Where the nose tip sits between the eye line (0) and the mouth line (1) on a frontal face
#: (median over the LFW dev images: 0.545).
PITCH_NEUTRAL = 0.545
#: tan(pitch) per unit of that fraction (eye-to-mouth ~70 mm / nose-tip depth ~26 mm).
PITCH_GAIN = 2.7


@dataclass(frozen=True)
class Pose:
    inter_eye: float  # pixels
    roll: float  # degrees, positive = eye line turns clockwise in the image
    yaw: float  # degrees, sign only indicative
    pitch: float  # degrees, positive = looking down (nose towards the mouth line)
    nose_fraction: float  # nose between eye line (0) and mouth line (1)
    mouth_drop: float  # eye line to mouth line, in inter-eye distances


def _face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Landmarks rotated so the eye line is horizontal, origin at the eye midpoint."""
    left, right = landmarks[0], landmarks[1]
    delta = right - left
    angle = math.atan2(float(delta[1]), float(delta[0]))
    cos, sin = math.cos(-angle), math.sin(-angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    centred = (landmarks - (left + right) / 2.0) @ rotation.T
    return centred, math.degrees(angle), float(np.hypot(*delta))


def estimate_pose(landmarks: np.ndarray) -> Pose:
    pts, roll, ied = _face_frame(np.asarray(landmarks, dtype=np.float64))
    ied = max(ied, 1e-6)
    nose = pts[2]
    mouth_mid = (pts[3] + pts[4]) / 2.0
    mouth_drop = float(mouth_mid[1]) / ied
    # Yaw: the nose's horizontal offset from the line joining eye midpoint (origin) and mouth midpoint.
    t = float(nose[1] / mouth_mid[1]) if abs(mouth_mid[1]) > 1e-6 else 0.0
    midline_x = float(mouth_mid[0]) * t
    offset = (float(nose[0]) - midline_x) / (ied / 2.0)
    yaw = math.degrees(math.atan(YAW_GAIN * offset))
    nose_fraction = float(nose[1] / mouth_mid[1]) if abs(mouth_mid[1]) > 1e-6 else 0.0
    pitch = math.degrees(math.atan(PITCH_GAIN * (nose_fraction - PITCH_NEUTRAL)))
    return Pose(ied, roll, yaw, pitch, nose_fraction, mouth_drop)


def plausible_face(landmarks: np.ndarray, box_width: float) -> bool:
    """False for landmark layouts no human face produces (a guard against odd false positives).

    Bounds are far outside what the dev faces show (LFW subjects: eye distance / box width
    0.23-0.54, nose 0.2-1.5 IED below the eye line, mouth 0.82-2.2 IED below it).
    """
    pts, _roll, ied = _face_frame(np.asarray(landmarks, dtype=np.float64))
    if box_width <= 0 or not 0.12 <= ied / box_width <= 0.9:
        return False
    nose_y = float(pts[2][1]) / ied
    mouth_y = float((pts[3][1] + pts[4][1]) / 2.0) / ied
    mouth_width = float(pts[4][0] - pts[3][0]) / ied
    return 0.05 < nose_y < mouth_y and 0.4 < mouth_y < 3.5 and mouth_width > 0.2
