"""The kiosk profile (``scale_to_min_face``) and the compiled MTCNN stages.

The kiosk profile detects a gate frame on a copy scaled so the smallest wanted face is 20 px; it
must find the same subject as the full-size search, with landmarks (and so the aligned crop)
within MTCNN's own noise, while crops keep coming from the full-resolution frame. Timing is not
tested here: the numbers are in bench/results/kiosk.md.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from services.detection.detector import FaceDetector, min_face_scale
from tests.detection.helpers import LFW, TIMEOUT, box_xyxy, iou, read_rgb, request
from tests.support import FACES
from tools.gate_frame import live_frame

#: Every 40th dev photo turned into a 1280x720 gate frame (25 frames, ~ 200 px faces).
PHOTOS = sorted(LFW.glob("*/*.jpg"))[::40]
KIOSK_MIN_FACE = 100


def _eyes(face) -> np.ndarray:
    lm = face.landmarks
    return np.array([[lm.left_eye.x, lm.left_eye.y], [lm.right_eye.x, lm.right_eye.y]])


def test_scale_follows_the_minimum_face():
    assert min_face_scale(20) == 1.0 and min_face_scale(12) == 1.0
    assert min_face_scale(100) == pytest.approx(0.2)


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.stem)
def test_kiosk_profile_finds_the_full_size_subject_within_landmark_noise(stub, photo):
    frame = live_frame(read_rgb(photo))
    full = stub.Detect(request(frame, subject_only=True, return_crops=True), timeout=TIMEOUT)
    kiosk = stub.Detect(
        request(
            frame,
            subject_only=True,
            return_crops=True,
            min_face_size=KIOSK_MIN_FACE,
            scale_to_min_face=True,
        ),
        timeout=TIMEOUT,
    )
    assert kiosk.detection_scale == pytest.approx(0.2)
    assert full.detection_scale == pytest.approx(0.8)
    if full.subject_index < 0:  # the one dev face MTCNN misses at any size
        assert kiosk.subject_index < 0
        return
    assert kiosk.subject_index == 0 and kiosk.image_width == 1280 and kiosk.image_height == 720
    a, b = full.faces[full.subject_index], kiosk.faces[0]
    assert iou(box_xyxy(a.box), box_xyxy(b.box)) >= 0.6  # measured over 51 frames: min 0.68, median 0.94
    inter_eye = float(np.linalg.norm(_eyes(a)[0] - _eyes(a)[1]))
    # measured over 51 frames: median 4%, max 10% of the eye distance (MTCNN's noise between scales)
    assert np.abs(_eyes(a) - _eyes(b)).max() <= 0.15 * inter_eye
    # crops are cut from the full frame in the model geometry, whatever scale detection ran at
    assert b.aligned.width == a.aligned.width == 160 and len(b.aligned.rgb) == 160 * 160 * 3
    crop_a = np.frombuffer(a.aligned.rgb, np.uint8).astype(float)
    crop_b = np.frombuffer(b.aligned.rgb, np.uint8).astype(float)
    # the same face, shifted by the landmark noise (templates of the two crops: cosine median 0.995,
    # min 0.971 over 51 frames; bench/results/kiosk.md)
    assert np.corrcoef(crop_a, crop_b)[0, 1] >= 0.5


def test_kiosk_profile_does_not_search_below_its_minimum(stub):
    photo = read_rgb(PHOTOS[0])  # a 150 px photo: its ~ 60 px face is under 100 px
    data = io.BytesIO()
    Image.fromarray(photo).save(data, format="PNG")
    small = stub.Detect(request(data.getvalue(), min_face_size=KIOSK_MIN_FACE), timeout=TIMEOUT)
    kiosk = stub.Detect(
        request(data.getvalue(), min_face_size=KIOSK_MIN_FACE, scale_to_min_face=True), timeout=TIMEOUT
    )
    assert small.subject_index < 0 and kiosk.subject_index < 0
    assert kiosk.detection_scale == pytest.approx(0.2)


def test_no_scale_below_the_pyramid_minimum(stub):
    data = (FACES / "multi_face").glob("*")
    group = sorted(data)[0].read_bytes()
    plain = stub.Detect(request(group), timeout=TIMEOUT)
    flagged = stub.Detect(request(group, scale_to_min_face=True), timeout=TIMEOUT)
    assert flagged.detection_scale == plain.detection_scale
    assert [f.box for f in flagged.faces] == [f.box for f in plain.faces]


def test_compiled_stages_trace_once_and_match_eager_mtcnn():
    compiled, eager = FaceDetector(), FaceDetector(compiled=False)
    compiled.load()
    eager.load()
    frame = np.asarray(Image.open(io.BytesIO(live_frame(read_rgb(PHOTOS[1])))).convert("RGB"))
    for image in (frame, read_rgb(PHOTOS[2]), frame[:500, :300]):
        for kw in ({}, {"min_face_px": 100, "scale_to_min_face": True}):
            a = compiled.detect([image], **kw)[0].faces
            b = eager.detect([image], **kw)[0].faces
            assert len(a) == len(b)
            for fa, fb in zip(a, b, strict=True):
                assert np.allclose(fa.box, fb.box, atol=0.05)
                assert np.allclose(fa.landmarks, fb.landmarks, atol=0.05)
    # one trace per network at load time; no later shape (pyramid level, patch count) retraces
    assert [s._model.experimental_get_tracing_count() for s in compiled._mtcnn.stages] == [1, 1, 1]
