"""A stream frame's verdict on other faces is docverify's (facegate.single_face): a face far behind
the traveller is background, reported and not refused; one of comparable size is a second person.

``judge`` is a pure function of detection's answer, so these build that answer directly; the stream
tests (test_stream.py) drive the same rule through the real services with real photos.
"""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from facegate.v1 import common_pb2, detection_pb2
from gateway.frame_quality import WAIT, Frame, judge

R = common_pb2.ReasonCode
QC = common_pb2.QualityCheck


def face(side: float, acceptable: bool = True) -> detection_pb2.DetectedFace:
    quality = common_pb2.Quality(
        acceptable=acceptable,
        measures=[common_pb2.QualityMeasure(check=QC.QUALITY_CHECK_SHARPNESS, value=500, passed=True)],
    )
    return detection_pb2.DetectedFace(
        box=common_pb2.BoundingBox(x=10, y=10, width=side, height=side), quality=quality
    )


def frame_with(*others: float) -> tuple[Frame, detection_pb2.DetectResponse]:
    faces = [face(200), *(face(side) for side in others)]
    response = detection_pb2.DetectResponse(faces=faces, subject_index=0, faces_total=len(faces))
    return Frame(index=3, image=common_pb2.Image(), captured_at=Timestamp(), received=0.0), response


def single_face(scored) -> common_pb2.QualityMeasure:
    return next(m for m in scored.quality.quality.measures if m.check == QC.QUALITY_CHECK_SINGLE_FACE)


def test_a_face_far_behind_the_traveller_is_background_and_named() -> None:
    scored = judge(*frame_with(60), other_face_ratio=0.4)
    assert scored.acceptable and scored.instruction == WAIT and not scored.quality.problems
    measure = single_face(scored)
    assert measure.passed and measure.value == pytest.approx(0.3) and measure.max == pytest.approx(0.4)
    assert "background" in measure.detail
    assert scored.quality.faces == 2  # what the detector found, background included


@pytest.mark.parametrize("other", [120, 200, 260])
def test_a_face_of_comparable_size_is_a_second_person(other: float) -> None:
    scored = judge(*frame_with(other), other_face_ratio=0.4)
    assert not scored.acceptable
    assert [p.code for p in scored.quality.problems] == [R.REASON_CODE_MULTIPLE_FACES]
    assert "2 people in the frame" in scored.quality.problems[0].message
    assert scored.instruction == "Only one person at a time, please"
    assert not single_face(scored).passed and QC.QUALITY_CHECK_SINGLE_FACE in scored.quality.quality.failed


def test_the_ratio_is_the_setting_not_a_constant() -> None:
    assert not judge(*frame_with(60), other_face_ratio=0.25).acceptable


def test_a_frame_with_only_background_faces_ranks_above_one_with_a_second_person() -> None:
    background = judge(*frame_with(60), other_face_ratio=0.4)
    companion = judge(*frame_with(150), other_face_ratio=0.4)
    assert background.rank() > companion.rank()
