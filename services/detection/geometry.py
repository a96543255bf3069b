"""Landmark plausibility from MTCNN's five points (head pose is in ``pose.py``).

A guard against odd false positives: detections whose five landmarks no human face can produce
are dropped before anything else looks at them.
"""

from __future__ import annotations

import math

import numpy as np


def _face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Landmarks rotated so the eye line is horizontal, origin at the eye midpoint."""
    left, right = landmarks[0], landmarks[1]
    delta = right - left
    angle = math.atan2(float(delta[1]), float(delta[0]))
    cos, sin = math.cos(-angle), math.sin(-angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    centred = (landmarks - (left + right) / 2.0) @ rotation.T
    return centred, math.degrees(angle), float(np.hypot(*delta))


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
