"""Head pose (yaw, pitch, roll) from MTCNN's five landmarks and a 3-D mean face.

The five image points are matched to the same five points of an average adult head with OpenCV's
``solvePnP`` (SQPnP: globally optimal for the reprojection error). The rotation is then split
into angles in the order that makes an in-plane turn of the image change the roll only:
``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (camera axes: x to the image's right, y down, z away).

The camera is unknown (a gate camera, a scanner, a press photo), so the pose is taken relative
to the line of sight through the face: the principal point sits at the landmarks' centre and the
focal length puts the mean face at ``VIEW_DISTANCE_MM``. What matters for recognition is how far
the head is turned from the camera's view of it, wherever in the frame the face is. Five points
carry no face-shape information: a person whose nose sits unusually low reads as looking down.
How large that error is on faces known to be frontal is measured in docs/detection.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: MTCNN's five landmarks (left eye, right eye, nose tip, mouth left, mouth right; left/right as
#: seen in the image) on a mean adult face, millimetres, origin at the nose tip, axes as the
#: camera's for a face looking straight into it (x right, y down, z away from the camera).
#: Source: MediaPipe's canonical face model (google/mediapipe,
#: mediapipe/modules/face_geometry/data/canonical_face_model.obj, Apache-2.0) at the metric scale
#: of hysts/pytorch_mpiigaze_demo, ptgaze/common/face_model_mediapipe.py (outer eye corners 90 mm
#: apart). Eye centre = mean of the 16 eye-contour vertices (33 7 163 144 145 153 154 155 133
#: 173 157 158 159 160 161 246, and their mirror images); nose tip = vertex 1; mouth corners =
#: vertices 61 and 291. The eye centres come out 63.2 mm apart, the adult mean pupil distance.
MEAN_FACE_MM = np.array(
    [
        [-31.60, -37.70, 38.50],
        [31.60, -37.70, 38.50],
        [0.00, 0.00, 0.00],
        [-24.56, 32.16, 31.92],
        [24.56, 32.16, 31.92],
    ]
)
#: Eye-centre distance of MEAN_FACE_MM.
MEAN_EYE_DISTANCE_MM = 63.2
#: Assumed camera-to-face distance: a traveller at a gate camera (~ 0.6 m). It only sets how much
#: perspective the fit expects; the angles hardly depend on it (30 cm to 3 m: < 1 degree).
VIEW_DISTANCE_MM = 600.0


@dataclass(frozen=True)
class Pose:
    inter_eye: float  # pixels between the eye landmarks
    yaw: float  # degrees, positive = face turned towards the image's right (nose moves right)
    pitch: float  # degrees, positive = looking down (nose moves down)
    roll: float  # degrees, positive = head tilted clockwise in the image (y down)
    error: float  # RMS reprojection error of the fit, in inter-eye distances


def camera_for(points: np.ndarray) -> np.ndarray:
    """Intrinsics looking straight at the face: principal point at the landmarks' centre."""
    ied = max(float(np.hypot(*(points[1] - points[0]))), 1e-6)
    focal = ied * VIEW_DISTANCE_MM / MEAN_EYE_DISTANCE_MM
    cx, cy = points.mean(axis=0)
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])


def euler_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of ``rotation`` = Rz(roll) @ Ry(-yaw) @ Rx(pitch).

    Ry's sign is flipped so that a positive yaw moves the nose (the point nearest the camera)
    towards the image's right.
    """
    r = rotation
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, float(r[2, 0])))))
    pitch = math.degrees(math.atan2(float(r[2, 1]), float(r[2, 2])))
    roll = math.degrees(math.atan2(float(r[1, 0]), float(r[0, 0])))
    return yaw, pitch, roll


def rotation_from(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The inverse of :func:`euler_angles` (degrees in, 3x3 rotation out)."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(-y), 0, math.sin(-y)], [0, 1, 0], [-math.sin(-y), 0, math.cos(-y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def estimate_pose(landmarks: np.ndarray) -> Pose:
    """Yaw, pitch and roll of the head whose five MTCNN landmarks are ``landmarks`` (5x2 pixels)."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    ied = max(float(np.hypot(*(points[1] - points[0]))), 1e-6)
    camera = camera_for(points)
    ok, rvec, tvec = cv2.solvePnP(MEAN_FACE_MM, points, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:  # SQPnP answers for any five distinct points; guard anyway (fail as "not frontal")
        return Pose(ied, 90.0, 90.0, 90.0, math.inf)
    rotation, _ = cv2.Rodrigues(rvec)
    yaw, pitch, roll = euler_angles(rotation)
    projected, _ = cv2.projectPoints(MEAN_FACE_MM, rvec, tvec, camera, None)
    error = float(np.sqrt(np.mean(np.sum((projected.reshape(5, 2) - points) ** 2, axis=1)))) / ied
    return Pose(ied, yaw, pitch, roll, error)
