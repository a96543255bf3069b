"""Head pose checked against known rotations (issue 17): rendered views of the 3-D mean face,
mirrored photos (yaw must change sign, not size), in-plane rotated photos (roll must follow the
rotation, yaw and pitch must not move) and frontal specimen portraits (near 0)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facegate.v1 import common_pb2, detection_pb2
from services.detection.pose import (
    MEAN_EYE_DISTANCE_MM,
    MEAN_FACE_MM,
    VIEW_DISTANCE_MM,
    estimate_pose,
    euler_angles,
    rotation_from,
)
from tests.detection.helpers import TIMEOUT, encode, lfw_images, read_rgb, request
from tests.support import DOCUMENTS, FACES

QC = common_pb2.QualityCheck
FRONTAL = FACES / "images" / "Paul_Krueger" / "Paul_Krueger_0001.jpg"
#: ICAO-compliant specimen portraits (frontal by the standard: yaw and pitch within 5 degrees).
SPECIMENS = ("passports_Canada.png", "id_cards_Spain.png", "visas_France.png", "id_cards_Latvia.png")


def render(yaw: float, pitch: float, roll: float, eye_px: float = 80.0) -> np.ndarray:
    """The five landmarks of the mean face turned by the given angles, seen from VIEW_DISTANCE_MM."""
    rotation = rotation_from(yaw, pitch, roll)
    rvec, _ = cv2.Rodrigues(rotation)
    focal = eye_px * VIEW_DISTANCE_MM / MEAN_EYE_DISTANCE_MM
    camera = np.array([[focal, 0, 640.0], [0, focal, 360.0], [0, 0, 1]])
    # The face's centre on the optical axis: the camera looks at the face, as the estimate assumes.
    tvec = np.array([0, 0, VIEW_DISTANCE_MM]) - rotation @ MEAN_FACE_MM.mean(axis=0)
    points, _ = cv2.projectPoints(MEAN_FACE_MM, rvec, tvec, camera, None)
    return points.reshape(5, 2)


def mirror(landmarks: np.ndarray, width: float) -> np.ndarray:
    """The landmarks of the mirrored image, in MTCNN's order (image-left eye and mouth corner first)."""
    flipped = np.column_stack([width - landmarks[:, 0], landmarks[:, 1]])
    return flipped[[1, 0, 2, 4, 3]]


def landmarks_of(face: detection_pb2.DetectedFace) -> np.ndarray:
    m = face.landmarks
    return np.array([[p.x, p.y] for p in (m.left_eye, m.right_eye, m.nose, m.mouth_left, m.mouth_right)])


def largest_face(stub, rgb: np.ndarray) -> detection_pb2.DetectedFace:
    reply = stub.Detect(request(encode(rgb)), timeout=TIMEOUT)
    assert reply.faces, "no face found"
    return max(reply.faces, key=lambda f: f.box.width * f.box.height)


# ---- the solver, on rendered views of the model itself -------------------------------------------


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"),
    [(0, 0, 0), (10, 0, 0), (-25, 0, 0), (0, 15, 0), (0, -20, 0), (20, -10, 5), (-8, 12, -30), (35, 20, 60)],
)
def test_rendered_rotations_are_recovered(yaw, pitch, roll):
    pose = estimate_pose(render(yaw, pitch, roll))
    # Within 1 degree: the estimate looks along the line of sight to the centre of the five image
    # points, the render at the centre of the five 3-D points; the two differ by a fraction of that.
    assert pose.yaw == pytest.approx(yaw, abs=1.0)
    assert pose.pitch == pytest.approx(pitch, abs=1.0)
    assert pose.roll == pytest.approx(roll, abs=1.0)
    assert pose.error < 0.01  # the model fits itself


def test_euler_angles_invert_rotation_from():
    for angles in [(0, 0, 0), (12.5, -7, 33), (-40, 25, -80)]:
        assert euler_angles(rotation_from(*angles)) == pytest.approx(angles, abs=1e-9)


def test_mirrored_landmarks_flip_yaw_and_roll_and_keep_pitch():
    points = render(18, -9, 7)
    a, b = estimate_pose(points), estimate_pose(mirror(points, 1280))
    assert b.yaw == pytest.approx(-a.yaw, abs=0.05)
    assert b.roll == pytest.approx(-a.roll, abs=0.05)
    assert b.pitch == pytest.approx(a.pitch, abs=0.05)


def test_sign_conventions():
    assert estimate_pose(render(15, 0, 0)).yaw > 10  # nose towards the image's right: positive
    assert estimate_pose(render(0, 15, 0)).pitch > 10  # looking down: positive
    assert estimate_pose(render(0, 0, 15)).roll > 10  # clockwise in the image (y down): positive


# ---- real photos through the detection service ------------------------------------------------------


def test_mirrored_photos_give_yaw_of_opposite_sign_and_equal_size(stub):
    """MTCNN's own landmark noise is the only thing that may break the symmetry."""
    sums, pitch_diffs, yaws = [], [], []
    for path in lfw_images()[::25]:  # 41 photos, spread over the identities
        rgb = read_rgb(path)
        face, flipped = largest_face(stub, rgb), largest_face(stub, np.ascontiguousarray(rgb[:, ::-1]))
        a, b = estimate_pose(landmarks_of(face)), estimate_pose(landmarks_of(flipped))
        sums.append(abs(a.yaw + b.yaw))
        pitch_diffs.append(abs(a.pitch - b.pitch))
        yaws.append(abs(a.yaw))
        # The service reports the same estimate, as a magnitude.
        measured = {m.check: m.value for m in face.quality.measures}
        assert measured[QC.QUALITY_CHECK_YAW] == pytest.approx(abs(a.yaw), abs=1e-6)
        assert measured[QC.QUALITY_CHECK_PITCH] == pytest.approx(abs(a.pitch), abs=1e-6)
    print(f"mirror |yaw + yaw'|: median {np.median(sums):.1f}, p90 {np.percentile(sums, 90):.1f} deg")
    assert max(yaws) > 10  # the sample holds turned heads, so the symmetry is tested, not only zeros
    assert np.median(sums) <= 2.5 and np.percentile(sums, 90) <= 6.0
    assert np.median(pitch_diffs) <= 3.0


@pytest.mark.parametrize("degrees", [-25.0, 10.0, 30.0])
def test_in_plane_rotation_changes_roll_by_the_angle_and_nothing_else(stub, degrees):
    rgb = cv2.resize(read_rgb(FRONTAL), (450, 450), interpolation=cv2.INTER_CUBIC)
    # Rotate about the face's centre (on a larger canvas, so no part of the face is cut off).
    canvas = cv2.copyMakeBorder(rgb, 150, 150, 150, 150, cv2.BORDER_REFLECT)
    h, w = canvas.shape[:2]
    # cv2's positive angle turns the image anticlockwise on screen: a roll of -degrees.
    turned = cv2.warpAffine(canvas, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0), (w, h))
    before = estimate_pose(landmarks_of(largest_face(stub, canvas)))
    after = estimate_pose(landmarks_of(largest_face(stub, turned)))
    assert after.roll - before.roll == pytest.approx(-degrees, abs=2.5)
    # MTCNN's landmarks themselves move when the face is not upright (measured: yaw and pitch of
    # the same face shift by up to 8 degrees at 25-30 degrees of roll); the solver adds nothing
    # (rendered views above). A roll mistaken for a turn would move them much further.
    assert after.yaw == pytest.approx(before.yaw, abs=10.0)
    assert after.pitch == pytest.approx(before.pitch, abs=10.0)


@pytest.mark.parametrize("name", SPECIMENS)
def test_frontal_specimen_portraits_read_near_zero(stub, name):
    face = largest_face(stub, read_rgb(DOCUMENTS / name))
    pose = estimate_pose(landmarks_of(face))
    assert abs(pose.yaw) <= 5.0, pose
    assert abs(pose.pitch) <= 8.0, pose
    assert abs(pose.roll) <= 4.0, pose
