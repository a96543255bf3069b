"""One traveller at a time: a second face of comparable size is another person at the gate
(MULTIPLE_FACES); a much smaller one is a face in the background, reported and not refused."""

from __future__ import annotations

import math

import pytest

from facegate.single_face import relative_sizes, single_face_measure
from facegate.v1 import common_pb2, detection_pb2, docverify_pb2, docverify_pb2_grpc
from tests.docverify.conftest import docverify_servicer
from tests.docverify.dg2_builder import dg2_for_image
from tests.docverify.frames import decode, encode, live_frame, page
from tests.support import FACES, connect, serve

R = common_pb2.ReasonCode
QC = common_pb2.QualityCheck
#: Two people side by side, faces 76 and 90 px (multi_face/faces.tsv): the size ratio of a
#: companion at the traveller's shoulder.
COMPANION = FACES / "multi_face" / "2008_001009.jpg"
#: A frontal press photo with one face far behind the subject (about 0.16 of its size).
BACKGROUND = FACES / "images" / "Halle_Berry" / "Halle_Berry_0007.jpg"


def face(x: float, y: float, side: float) -> detection_pb2.DetectedFace:
    return detection_pb2.DetectedFace(box=common_pb2.BoundingBox(x=x, y=y, width=side, height=side))


def response(*sides: float, subject: int = 0) -> detection_pb2.DetectResponse:
    faces = [face(100.0 * i, 0.0, s) for i, s in enumerate(sides)]
    return detection_pb2.DetectResponse(faces=faces, subject_index=subject, faces_total=len(faces))


# ---- the rule --------------------------------------------------------------------------------------


def test_sizes_are_square_roots_of_area_ratios_largest_first():
    sizes = relative_sizes(response(200, 50, 120, 80))
    assert sizes == pytest.approx([0.6, 0.4, 0.25])
    wide = detection_pb2.DetectResponse(
        faces=[
            detection_pb2.DetectedFace(box=common_pb2.BoundingBox(width=200, height=100)),
            detection_pb2.DetectedFace(box=common_pb2.BoundingBox(width=50, height=100)),
        ],
        subject_index=0,
    )
    assert relative_sizes(wide) == pytest.approx([math.sqrt(0.25)])


def test_a_face_larger_than_the_subject_counts_above_one():
    assert relative_sizes(response(100, 150, subject=0)) == pytest.approx([1.5])


def test_no_subject_or_no_other_face_has_no_sizes():
    assert relative_sizes(detection_pb2.DetectResponse(subject_index=-1)) == []
    assert relative_sizes(response(200)) == []


@pytest.mark.parametrize(
    ("sizes", "passed", "value", "words"),
    [
        ([], True, 0.0, "no other face"),
        ([0.39, 0.2], True, 0.39, "2 face(s) in the background, 0.39/0.20"),
        ([0.4], False, 0.4, "1 other face(s) 0.40"),
        ([0.85, 0.3], False, 0.85, "another person at the gate"),
    ],
)
def test_measure_passes_below_the_ratio_and_names_what_it_saw(sizes, passed, value, words):
    m = single_face_measure(sizes, 0.4)
    assert m.check == QC.QUALITY_CHECK_SINGLE_FACE
    assert m.passed is passed and m.value == pytest.approx(value) and m.max == pytest.approx(0.4)
    assert words in m.detail


# ---- through the service, on real photos --------------------------------------------------------


@pytest.mark.slow
def test_companion_of_comparable_size_is_multiple_faces(stub):
    # A Full HD gate camera: both faces well over the kiosk profile's 100 px.
    live = live_frame(decode(COMPANION.read_bytes()), face_height=1080, size=(1920, 1080))
    reply = stub.Verify(
        docverify_pb2.VerifyRequest(
            live=common_pb2.Image(data=live),
            page_scan=common_pb2.Image(data=page("passports_ICAO_Utopia_TD3_hires.jpg")),
        )
    )
    assert reply.outcome == docverify_pb2.MATCH_OUTCOME_INCONCLUSIVE
    assert R.REASON_CODE_MULTIPLE_FACES in [r.code for r in reply.reasons]
    single = _single(reply)
    assert not single.passed and single.value >= 0.4, single
    assert QC.QUALITY_CHECK_SINGLE_FACE in reply.live_quality.failed and not reply.live_quality.acceptable


@pytest.fixture(scope="module")
def full_search(detection_server, embedding_server, calibration_dir):
    """A docverify that searches the whole live frame (no kiosk profile), so small faces are found."""

    def start(**overrides):
        servicer = docverify_servicer(
            detection_target=f"127.0.0.1:{detection_server.port}",
            embedding_target=f"127.0.0.1:{embedding_server.port}",
            calibration_dir=calibration_dir,
            downstream_timeout_s=60,
            live_kiosk_min_face_size=None,
            **overrides,
        )
        return servicer

    return start


def _verify_background(servicer) -> docverify_pb2.VerifyResponse:
    rgb = decode(BACKGROUND.read_bytes())
    dg2 = dg2_for_image(encode(rgb, "JPEG"), "JPEG", rgb.shape[1], rgb.shape[0])
    with serve(servicer, label="docverify-full-search") as running, connect(running) as ch:
        reply = docverify_pb2_grpc.DocVerifyServiceStub(ch).Verify(
            docverify_pb2.VerifyRequest(live=common_pb2.Image(data=live_frame(rgb)), dg2=dg2)
        )
    servicer.close()
    return reply


@pytest.mark.slow
def test_face_far_behind_the_traveller_is_reported_not_refused(full_search):
    reply = _verify_background(full_search())
    single = _single(reply)
    assert single.passed and 0.05 < single.value < 0.4, single
    assert "in the background" in single.detail
    live_blockers = {R.REASON_CODE_NO_FACE, R.REASON_CODE_MULTIPLE_FACES, R.REASON_CODE_QUALITY_TOO_LOW}
    assert not live_blockers & {r.code for r in reply.reasons}, list(reply.reasons)
    assert reply.live_quality.acceptable
    # The same photo as the chip portrait, and the traveller's face (not the one behind) was compared.
    assert reply.similarity > 0.9


@pytest.mark.slow
def test_the_ratio_is_the_setting(full_search):
    reply = _verify_background(full_search(live_other_face_ratio=0.1))
    assert R.REASON_CODE_MULTIPLE_FACES in [r.code for r in reply.reasons]
    assert reply.outcome == docverify_pb2.MATCH_OUTCOME_INCONCLUSIVE
    assert not _single(reply).passed


def _single(reply: docverify_pb2.VerifyResponse) -> common_pb2.QualityMeasure:
    found = [m for m in reply.live_quality.measures if m.check == QC.QUALITY_CHECK_SINGLE_FACE]
    assert len(found) == 1, list(reply.live_quality.measures)
    return found[0]
