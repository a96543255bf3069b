"""Docverify over real detection and embedding servers (MTCNN, FaceNet) on loopback."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from facegate.v1 import common_pb2, docverify_pb2, docverify_pb2_grpc
from tests.docverify.conftest import LIVE_SOURCE, docverify_servicer, embedding_servicer
from tests.docverify.dg2_builder import dg2, facial_image_block, facial_record
from tests.docverify.frames import decode, encode, live_frame, page
from tests.docverify.specimens import CHECK_DIGITS, SPECIMENS, corrupted
from tests.support import FACES, connect, serve

pytestmark = pytest.mark.slow

R = common_pb2.ReasonCode
MATCH = docverify_pb2.MATCH_OUTCOME_MATCH
NO_MATCH = docverify_pb2.MATCH_OUTCOME_NO_MATCH
INCONCLUSIVE = docverify_pb2.MATCH_OUTCOME_INCONCLUSIVE

WITH_PORTRAIT = [s for s in SPECIMENS if s["portrait_centre"]]
UTOPIA = [s for s in SPECIMENS if s["holder"] == "utopia-example"]
TD3 = next(s for s in SPECIMENS if s["file"] == "passports_ICAO_Utopia_TD3_hires.jpg")
#: A frontal LFW photo that passes the gate-camera quality policy when framed as a 1280x720 capture.
LFW = FACES / "images" / "Abdel_Nasser_Assidi" / "Abdel_Nasser_Assidi_0001.jpg"


def codes(reply) -> list[int]:
    return [r.code for r in reply.reasons]


def verify(stub, live: bytes, **kwargs):
    return stub.Verify(docverify_pb2.VerifyRequest(live=common_pb2.Image(data=live), **kwargs))


# ---- portrait location ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", WITH_PORTRAIT, ids=lambda s: s["file"])
def test_portrait_found_on_every_specimen_page(stub, spec):
    reply = stub.ExtractPortrait(
        docverify_pb2.ExtractPortraitRequest(page_scan=common_pb2.Image(data=page(spec["file"])))
    )
    assert reply.source == docverify_pb2.PORTRAIT_SOURCE_PAGE_SCAN
    box, (cx, cy) = reply.box, spec["portrait_centre"]
    # The main portrait, not the ghost image or a false detection elsewhere on the page.
    assert box.x <= cx <= box.x + box.width and box.y <= cy <= box.y + box.height, (box, cx, cy)
    assert decode(reply.portrait.data).shape == (reply.height, reply.width, 3)


def test_page_without_portrait_is_not_found(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.ExtractPortrait(
            docverify_pb2.ExtractPortraitRequest(
                page_scan=common_pb2.Image(data=page("id_cards_Switzerland.jpg"))
            )
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


# ---- 1:1 decisions ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [s for s in UTOPIA if s["file"] != LIVE_SOURCE], ids=lambda s: s["file"])
def test_same_person_across_utopia_documents_matches(stub, utopia_live, spec):
    reply = verify(stub, utopia_live, page_scan=common_pb2.Image(data=page(spec["file"])))
    assert reply.outcome == MATCH, (reply.similarity, reply.threshold, list(reply.reasons))
    assert codes(reply) == [R.REASON_CODE_MATCH]
    assert reply.similarity >= reply.threshold > 0
    assert reply.target_far == pytest.approx(1e-3)
    assert reply.live_quality.acceptable and reply.portrait_quality.acceptable
    assert reply.portrait_source == docverify_pb2.PORTRAIT_SOURCE_PAGE_SCAN
    assert len(reply.model_version) == 64


OTHERS = [s for s in WITH_PORTRAIT if s["holder"] != "utopia-example"]


@pytest.mark.parametrize("other", OTHERS, ids=lambda s: s["file"])
def test_different_specimens_do_not_match(stub, utopia_live, other):
    reply = verify(stub, utopia_live, page_scan=common_pb2.Image(data=page(other["file"])))
    assert reply.similarity < 0.4, reply.similarity
    # The US border card's portrait is turned, ~ 17 degrees by the solvePnP estimate (the old
    # landmark-ratio estimate read 40 and refused it): within the portrait policy's 20, compared.
    assert reply.outcome == NO_MATCH, (reply.similarity, reply.threshold, list(reply.reasons))
    assert codes(reply) == [R.REASON_CODE_NO_MATCH]
    assert reply.portrait_quality.acceptable


def test_turned_portrait_goes_to_an_officer_even_for_the_same_person(stub):
    """A portrait far from frontal (yaw ~ 40 degrees; ICAO asks 5) is not compared, match or not."""
    person = FACES / "images" / "Paul_ONeill"
    live = live_frame(decode((person / "Paul_ONeill_0001.jpg").read_bytes()))
    reply = verify(
        stub, live, portrait_image=common_pb2.Image(data=(person / "Paul_ONeill_0003.jpg").read_bytes())
    )
    assert reply.outcome == INCONCLUSIVE, list(reply.reasons)
    assert R.REASON_CODE_PORTRAIT_QUALITY_TOO_LOW in codes(reply)
    assert common_pb2.QualityCheck.QUALITY_CHECK_YAW in reply.portrait_quality.failed
    assert reply.live_quality.acceptable


def test_different_specimen_as_live_does_not_match(stub, portraits):
    live = live_frame(portraits["passports_Canada.png"])
    reply = verify(stub, live, page_scan=common_pb2.Image(data=page(TD3["file"])))
    assert reply.outcome == NO_MATCH


@pytest.mark.parametrize("doc", [TD3["file"], "passports_China.png", "id_cards_Spain.png"])
def test_lfw_photo_against_a_specimen_does_not_match(stub, doc):
    live = live_frame(decode(LFW.read_bytes()))
    reply = verify(stub, live, page_scan=common_pb2.Image(data=page(doc)))
    # LFW news photos may show other people too (MULTIPLE_FACES makes it INCONCLUSIVE): the face
    # comparison itself must say NO_MATCH, and the outcome must never be MATCH.
    assert reply.outcome in (NO_MATCH, INCONCLUSIVE), list(reply.reasons)
    assert R.REASON_CODE_NO_MATCH in codes(reply)
    assert reply.similarity < reply.threshold


@pytest.mark.parametrize("fmt", ["JPEG", "JPEG2000"])
def test_dg2_portrait_matches_the_same_person(stub, utopia_live, portraits, fmt):
    rgb = portraits["other_ICAO_Utopia_TD2_hires.jpg"]
    image = encode(rgb, fmt)
    block = facial_image_block(
        image, width=rgb.shape[1], height=rgb.shape[0], data_type=0 if fmt == "JPEG" else 1
    )
    reply = verify(stub, utopia_live, dg2=dg2([facial_record([block])]))
    assert reply.portrait_source == docverify_pb2.PORTRAIT_SOURCE_DG2
    assert reply.outcome == MATCH, (reply.similarity, list(reply.reasons))


def test_portrait_image_source(stub, utopia_live, portraits):
    image = encode(portraits["visas_MRVB_ICAO_Example.png"], "PNG")
    reply = verify(stub, utopia_live, portrait_image=common_pb2.Image(data=image))
    assert reply.portrait_source == docverify_pb2.PORTRAIT_SOURCE_IMAGE
    assert reply.outcome == MATCH


def portrait_full_searches(why: str) -> float:
    from prometheus_client import REGISTRY

    name = "facegate_docverify_portrait_full_searches_total"
    return REGISTRY.get_sample_value(name, {"why": why}) or 0.0


def test_dg2_profile_finds_a_chip_sized_face_and_falls_back_for_a_small_one(stub, utopia_live, portraits):
    import cv2

    def full_searches() -> float:
        return portrait_full_searches("no_face")

    rgb = portraits["other_ICAO_Utopia_TD2_hires.jpg"]
    height = round(rgb.shape[0] * 480 / rgb.shape[1])
    chip = cv2.resize(rgb, (480, height), interpolation=cv2.INTER_CUBIC)  # a 480 px wide DG2 image
    block = facial_image_block(encode(chip, "JPEG"), width=480, height=height, data_type=0)
    before = full_searches()
    reply = verify(stub, utopia_live, dg2=dg2([facial_record([block])]))
    assert reply.outcome == MATCH, (reply.similarity, list(reply.reasons))
    assert full_searches() == before  # its face is half the image wide: the fast search finds it
    # The same portrait as a small part of a large chip image: too small for the profile, so the
    # whole image is searched, and the face is still found and compared.
    canvas = np.full((rgb.shape[0] * 6, rgb.shape[1] * 6, 3), 235, np.uint8)
    canvas[: rgb.shape[0], : rgb.shape[1]] = rgb
    block = facial_image_block(
        encode(canvas, "JPEG"), width=canvas.shape[1], height=canvas.shape[0], data_type=0
    )
    reply = verify(stub, utopia_live, dg2=dg2([facial_record([block])]))
    assert R.REASON_CODE_PORTRAIT_NOT_FOUND not in codes(reply) and reply.HasField("live_template")
    assert reply.outcome == MATCH, (reply.similarity, list(reply.reasons))
    assert full_searches() == before + 1
    # A portrait image gets the full search at once (it may hold other faces): no second search.
    reply = verify(stub, utopia_live, portrait_image=common_pb2.Image(data=encode(canvas, "PNG")))
    assert reply.outcome == MATCH and full_searches() == before + 1


def test_a_dg2_portrait_the_profile_refuses_is_searched_in_full_and_stays_refused(stub):
    """A chip portrait too dark to judge fails in the fast search and in the full one: the full
    search runs before the traveller is sent to an officer, and its refusal is the answer."""
    import cv2

    rgb = decode(LFW.read_bytes())
    dark = (cv2.resize(rgb, (480, 480), interpolation=cv2.INTER_CUBIC) * 0.3).astype(np.uint8)
    block = facial_image_block(encode(dark, "JPEG"), width=480, height=480, data_type=0)
    before = portrait_full_searches("quality")
    reply = verify(stub, live_frame(rgb), dg2=dg2([facial_record([block])]))
    assert portrait_full_searches("quality") == before + 1
    assert reply.outcome == INCONCLUSIVE and R.REASON_CODE_PORTRAIT_QUALITY_TOO_LOW in codes(reply)
    assert common_pb2.QualityCheck.QUALITY_CHECK_BRIGHTNESS in reply.portrait_quality.failed


def test_the_full_search_overturns_a_pose_the_profile_misread(stub, detection_server):
    """Aldo_Paredes_0002 as an ICAO-style chip portrait (tools.docset, as the kiosk false-reject run
    renders them): landmarks from the profile's third-size copy read its yaw as ~ 38 degrees, over
    the 35 degree bound; the full search reads ~ 30. The traveller is compared and matched, not
    sent to an officer for a misread pose."""
    import io

    from PIL import Image

    from facegate.v1 import detection_pb2
    from tests.docverify.dg2_builder import dg2_for_image
    from tools.docset.build import Detector, geometry
    from tools.docset.portrait import render

    person = FACES / "images" / "Aldo_Paredes"
    photo = (person / "Aldo_Paredes_0002.jpg").read_bytes()
    det = Detector(f"127.0.0.1:{detection_server.port}")
    try:
        face = det.face(photo, detection_pb2.SUBJECT_SELECTION_MOST_CENTRAL)
    finally:
        det.channel.close()
    assert face is not None
    portrait = render(Image.open(io.BytesIO(photo)), geometry(face), 300, (232, 232, 228))
    buf = io.BytesIO()
    portrait.save(buf, format="JPEG", quality=90)
    chip = dg2_for_image(buf.getvalue(), "JPEG", portrait.width, portrait.height)
    live = live_frame(decode((person / "Aldo_Paredes_0001.jpg").read_bytes()))
    before = portrait_full_searches("quality")
    reply = verify(stub, live, dg2=chip)
    assert portrait_full_searches("quality") == before + 1
    assert reply.outcome == MATCH, (reply.similarity, list(reply.reasons))
    yaw = next(
        m for m in reply.portrait_quality.measures if m.check == common_pb2.QualityCheck.QUALITY_CHECK_YAW
    )
    assert yaw.passed and abs(yaw.value) < 35


# ---- MRZ and document reasons ----------------------------------------------------------------


def test_expired_document_never_matches(stub, utopia_live):
    doc = common_pb2.Image(data=page(TD3["file"]))
    mrz = "\n".join(TD3["mrz"])
    valid = verify(stub, utopia_live, page_scan=doc, mrz=mrz, decision_date="2010-06-01")
    assert valid.outcome == MATCH and valid.mrz.valid and not valid.mrz.expired
    expired = verify(stub, utopia_live, page_scan=doc, mrz=mrz, decision_date="2026-11-28")
    assert expired.outcome == INCONCLUSIVE
    assert set(codes(expired)) == {R.REASON_CODE_MATCH, R.REASON_CODE_DOCUMENT_EXPIRED}
    assert expired.mrz.expired


def test_invalid_mrz_never_matches(stub, utopia_live):
    line, column, _ = CHECK_DIGITS["TD3"][0]
    mrz = "\n".join(corrupted(TD3["mrz"], line, column))
    reply = verify(
        stub,
        utopia_live,
        page_scan=common_pb2.Image(data=page(TD3["file"])),
        mrz=mrz,
        decision_date="2010-06-01",
    )
    assert reply.outcome == INCONCLUSIVE
    assert R.REASON_CODE_MRZ_INVALID in codes(reply)
    assert not reply.mrz.valid


def test_no_face_in_live(stub):
    live = (FACES / "no_face" / "dlib_giraffe.jpg").read_bytes()
    reply = verify(stub, live, page_scan=common_pb2.Image(data=page(TD3["file"])))
    assert reply.outcome == INCONCLUSIVE
    assert R.REASON_CODE_NO_FACE in codes(reply)


def test_several_faces_in_live(stub):
    live = (FACES / "multi_face" / "2008_002506.jpg").read_bytes()
    reply = verify(stub, live, page_scan=common_pb2.Image(data=page(TD3["file"])))
    assert reply.outcome == INCONCLUSIVE
    assert R.REASON_CODE_MULTIPLE_FACES in codes(reply)


def test_portrait_not_found(stub, utopia_live):
    reply = verify(stub, utopia_live, page_scan=common_pb2.Image(data=page("id_cards_Switzerland.jpg")))
    assert reply.outcome == INCONCLUSIVE
    assert R.REASON_CODE_PORTRAIT_NOT_FOUND in codes(reply)


def test_small_live_face_is_quality_too_low(stub):
    # The page scan itself as "live": a face of ~ 50 px fails the gate camera's quality bounds.
    reply = verify(
        stub, page("passports_ICAO_Example.png"), page_scan=common_pb2.Image(data=page(TD3["file"]))
    )
    assert reply.outcome == INCONCLUSIVE
    assert R.REASON_CODE_QUALITY_TOO_LOW in codes(reply)
    assert not reply.live_quality.acceptable and reply.live_quality.failed


def test_kiosk_profile_searches_the_full_frame_only_when_no_large_face(stub, utopia_live):
    from prometheus_client import REGISTRY

    def full_searches() -> float:
        return REGISTRY.get_sample_value("facegate_docverify_live_full_searches_total") or 0.0

    before = full_searches()
    framed = verify(
        stub, live_frame(decode((LFW).read_bytes())), page_scan=common_pb2.Image(data=page(TD3["file"]))
    )
    assert R.REASON_CODE_NO_FACE not in codes(framed) and framed.live_quality.measures
    assert full_searches() == before  # a gate-frame face is found by the fast profile alone
    small = verify(
        stub, page("passports_ICAO_Example.png"), page_scan=common_pb2.Image(data=page(TD3["file"]))
    )
    assert R.REASON_CODE_QUALITY_TOO_LOW in codes(small)  # the ~ 50 px face is still found and judged
    assert full_searches() == before + 1


def test_bad_live_image_is_invalid_argument(stub):
    with pytest.raises(grpc.RpcError) as info:
        verify(stub, b"\xff\xd8\xff" + bytes(100), page_scan=common_pb2.Image(data=page(TD3["file"])))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("live image:")


def test_target_far_must_be_calibrated(stub, utopia_live):
    with pytest.raises(grpc.RpcError) as info:
        verify(stub, utopia_live, page_scan=common_pb2.Image(data=page(TD3["file"])), target_far=0.0123)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no threshold calibrated for FAR 0.0123" in info.value.details()
    looser = verify(stub, utopia_live, page_scan=common_pb2.Image(data=page(TD3["file"])), target_far=0.01)
    assert looser.target_far == pytest.approx(0.01)


# ---- fail closed -----------------------------------------------------------------------------


def test_missing_calibration_never_matches(detection_server, embedding_server, utopia_live, tmp_path):
    servicer = docverify_servicer(
        detection_target=f"127.0.0.1:{detection_server.port}",
        embedding_target=f"127.0.0.1:{embedding_server.port}",
        calibration_dir=tmp_path,  # empty: no thresholds for any model version
        downstream_timeout_s=60,
    )
    with serve(servicer, label="docverify-uncalibrated") as running, connect(running) as ch:
        reply = verify(
            docverify_pb2_grpc.DocVerifyServiceStub(ch),
            utopia_live,
            page_scan=common_pb2.Image(data=page(TD3["file"])),
        )
    servicer.close()
    assert reply.outcome == INCONCLUSIVE
    assert codes(reply) == [R.REASON_CODE_SERVICE_UNAVAILABLE]
    assert "no calibrated portrait-source thresholds" in reply.reasons[0].message
    assert reply.similarity > 0.5 and reply.threshold == 0 and reply.target_far == 0


def test_stopped_embedding_server_fails_closed(
    detection_server, embedding_model, calibration_dir, utopia_live
):
    embedding = embedding_servicer(embedding_model)
    doc = common_pb2.Image(data=page(TD3["file"]))
    with serve(embedding, label="embedding-to-stop") as emb_running:
        servicer = docverify_servicer(
            detection_target=f"127.0.0.1:{detection_server.port}",
            embedding_target=f"127.0.0.1:{emb_running.port}",
            calibration_dir=calibration_dir,
            downstream_timeout_s=10,
        )
        with serve(servicer, label="docverify-stop") as running, connect(running) as ch:
            dv = docverify_pb2_grpc.DocVerifyServiceStub(ch)
            assert verify(dv, utopia_live, page_scan=doc).outcome == MATCH
            emb_running.drain(0)  # the embedding server goes away mid-session
            reply = verify(dv, utopia_live, page_scan=doc)
        servicer.close()
    embedding.close()
    assert reply.outcome == INCONCLUSIVE
    assert codes(reply) == [R.REASON_CODE_SERVICE_UNAVAILABLE]
    assert "embedding service: UNAVAILABLE" in reply.reasons[0].message


def test_stopped_detection_server_fails_closed(embedding_server, calibration_dir, utopia_live):
    from tests.docverify.conftest import unused_target

    servicer = docverify_servicer(
        detection_target=unused_target(),
        embedding_target=f"127.0.0.1:{embedding_server.port}",
        calibration_dir=calibration_dir,
        downstream_timeout_s=10,
    )
    with serve(servicer, label="docverify-nodetect") as running, connect(running) as ch:
        reply = verify(
            docverify_pb2_grpc.DocVerifyServiceStub(ch),
            utopia_live,
            page_scan=common_pb2.Image(data=page(TD3["file"])),
        )
    servicer.close()
    assert reply.outcome == INCONCLUSIVE
    assert codes(reply) == [R.REASON_CODE_SERVICE_UNAVAILABLE]
    assert "detection service" in reply.reasons[0].message
