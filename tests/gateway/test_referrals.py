"""Referrals as officers work them, on the real stack: the held images and their lifetime, the
outcome, the two-officer rule for watchlist hits, and what each action leaves in the audit trail;
WhoAmI and the ops status. (The held-image store's time and size bounds are checked on their own.)"""

from __future__ import annotations

import io
import time
import uuid

import grpc
import pytest
from PIL import Image

from facegate.audit import read_records
from facegate.commands.watchlist import refusal_reason
from facegate.errors import FaceRejected, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from facegate.gateway_client import Gateway
from facegate.v1 import common_pb2, docverify_pb2, gateway_pb2, watchlist_pb2
from gateway.admin import REASON_OF_REJECTION
from gateway.keys import add_key
from gateway.referrals import HeldImages
from tests.docverify.dg2_builder import dg2_for_image
from tests.gateway.conftest import OTHER_PERSON, TRAVELLER, gate_frame
from tests.support import FACES

pytestmark = pytest.mark.slow

LIVE = gate_frame(TRAVELLER / "Amram_Mitzna_0001.jpg")
PORTRAIT = (TRAVELLER / "Amram_Mitzna_0002.jpg").read_bytes()
HS = gateway_pb2.HitStatus
R = common_pb2.ReasonCode
GROUP = FACES / "multi_face/2008_001009.jpg"


def gw(stack, role: str, key: str | None = None) -> Gateway:
    return Gateway(stack.target, key=key or stack.keys[role], timeout=120)


@pytest.fixture(scope="module")
def second_officer(stack) -> str:
    """A second officer's key, added to the running gateway's key file (re-read within a second)."""
    key, _ = add_key(stack.servicer.settings.key_file, "officer", "tests: the second officer")
    time.sleep(1.5)
    return key


def refer(stack, portrait: bytes = b"", gate_id: str = "gate-r", **kwargs) -> str:
    """A REFER decision id from a kiosk (a different person's portrait unless told otherwise)."""
    with gw(stack, "kiosk") as kiosk:
        decision = kiosk.verify_traveller(
            LIVE, portrait=portrait or OTHER_PERSON.read_bytes(), gate_id=gate_id, **kwargs
        )
    assert decision.outcome == "REFER"
    return decision.decision_id


def records_about(stack, decision_id: str) -> list[dict]:
    return [r for r in read_records(stack.audit_log) if r.get("refers_to") == decision_id]


def test_a_referral_shows_its_images_until_the_outcome_then_drops_them(stack) -> None:
    decision_id = refer(stack)
    with gw(stack, "officer") as officer:
        assert decision_id in [r.decision.decision_id for r in officer.referrals(open_only=True)]
        referral = officer.referral(decision_id)
        assert referral.images_held and referral.live.data == LIVE
        assert referral.portrait.data == OTHER_PERSON.read_bytes()
        assert referral.record.gate_id == "gate-r" and referral.record.decision.reasons
        assert referral.outcome == gateway_pb2.REFERRAL_OUTCOME_UNSPECIFIED
        assert referral.hit_status == HS.HIT_STATUS_UNSPECIFIED  # a mismatch, no watchlist hit
        me = officer.whoami().key_id

        closed = officer.record_referral_outcome(decision_id, "admitted")
        assert closed.outcome == gateway_pb2.REFERRAL_OUTCOME_ADMITTED and closed.outcome_by == me
        assert not closed.images_held and not closed.live.data and not closed.portrait.data
        assert not officer.referral(decision_id).images_held
        assert decision_id not in [r.decision.decision_id for r in officer.referrals(open_only=True)]
        assert decision_id in [r.decision.decision_id for r in officer.referrals()]
        with pytest.raises(FailedPrecondition, match="already closed: ADMITTED"):
            officer.record_referral_outcome(decision_id, "refused")
        with pytest.raises(FailedPrecondition, match="no watchlist hit"):
            officer.confirm_watchlist_hit(decision_id)
    assert stack.servicer.held.get(decision_id) is None
    audited = [(r["operation"], r["outcome"], r["caller"]) for r in records_about(stack, decision_id)]
    assert audited == [
        ("RecordReferralOutcome", "ADMITTED", me),
        ("RecordReferralOutcome", "FAILED_PRECONDITION", me),
        ("ConfirmWatchlistHit", "FAILED_PRECONDITION", me),
    ]
    assert records_about(stack, decision_id)[0]["gate_id"] == "gate-r"


def test_a_dg2_portrait_is_cropped_and_shown_as_an_image_a_browser_reads(stack) -> None:
    rgb = Image.open(OTHER_PERSON).convert("RGB")
    jp2 = io.BytesIO()
    rgb.save(jp2, format="JPEG2000")
    dg2 = dg2_for_image(jp2.getvalue(), "JPEG2000", *rgb.size)
    with gw(stack, "kiosk") as kiosk:
        decision = kiosk.verify_traveller(LIVE, dg2=dg2, gate_id="gate-d")
    assert decision.outcome == "REFER"
    with gw(stack, "officer") as officer:
        referral = officer.referral(decision.decision_id)
        officer.record_referral_outcome(decision.decision_id, "escalated")
    assert referral.portrait.format_hint == common_pb2.IMAGE_FORMAT_PNG
    assert Image.open(io.BytesIO(referral.portrait.data)).size == rgb.size


def test_a_watchlist_hit_needs_two_different_officers(stack, second_officer: str) -> None:
    name = "wanted_" + uuid.uuid4().hex[:8]
    with gw(stack, "admin") as admin:
        admin.create_watchlist(name, "wanted")
        admin.enroll(
            name, [LIVE], info=watchlist_pb2.SubjectInfo(display_name="A. Wanted", category="wanted")
        )
        decision_id = refer(stack, portrait=PORTRAIT, watchlists=[name])
        with gw(stack, "officer") as officer:
            (candidate,) = officer.referral(decision_id).candidates  # what the officer acts on
            assert (candidate.info.display_name, candidate.info.category) == ("A. Wanted", "wanted")
            _, (found,) = officer.identify(PORTRAIT, watchlists=[name])
            assert found.display_name == "A. Wanted" and found.subject_id == candidate.subject_id
        admin.delete_watchlist(name)
    with gw(stack, "officer") as first, gw(stack, "officer", second_officer) as second:
        referral = first.referral(decision_id)
        assert referral.hit_status == HS.HIT_STATUS_UNCONFIRMED and referral.record.candidates
        assert not referral.candidates[0].info.display_name  # erased with its list: ids only
        one = first.confirm_watchlist_hit(decision_id)
        assert one.hit_status == HS.HIT_STATUS_AWAITING_SECOND
        with pytest.raises(FailedPrecondition, match="second, different officer"):
            first.confirm_watchlist_hit(decision_id)
        assert first.referral(decision_id).hit_status == HS.HIT_STATUS_AWAITING_SECOND
        two = second.confirm_watchlist_hit(decision_id)
        assert two.hit_status == HS.HIT_STATUS_CONFIRMED
        ids = [first.whoami().key_id, second.whoami().key_id]
        assert list(two.hit_confirmed_by) == ids and ids[0] != ids[1]
        with pytest.raises(FailedPrecondition, match="already confirmed"):
            second.confirm_watchlist_hit(decision_id)
        second.record_referral_outcome(decision_id, "refused")
    audited = [(r["operation"], r["outcome"], r["caller"]) for r in records_about(stack, decision_id)]
    assert audited == [
        ("ConfirmWatchlistHit", "AWAITING_SECOND_OFFICER", ids[0]),
        ("ConfirmWatchlistHit", "FAILED_PRECONDITION", ids[0]),
        ("ConfirmWatchlistHit", "CONFIRMED", ids[1]),
        ("ConfirmWatchlistHit", "FAILED_PRECONDITION", ids[1]),
        ("RecordReferralOutcome", "ENTRY_REFUSED", ids[1]),
    ]


def test_only_a_gate_referral_can_be_worked(stack) -> None:
    with gw(stack, "officer") as officer:
        not_a_gate = officer.compare(LIVE, OTHER_PERSON).decision_id  # a REFER, but an officer's
        for decision_id in (not_a_gate, uuid.uuid4().hex):
            with pytest.raises(NotFound):
                officer.referral(decision_id)
            with pytest.raises(NotFound):
                officer.confirm_watchlist_hit(decision_id)
        with pytest.raises(InvalidArgument):
            officer.referral("")
        with pytest.raises(grpc.RpcError) as err:
            officer.stub.RecordReferralOutcome(
                gateway_pb2.RecordReferralOutcomeRequest(decision_id=not_a_gate)
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "outcome" in err.value.details()
    assert records_about(stack, not_a_gate) == []  # naming no referral is an input error, not an action


def test_whoami_and_the_ops_status(stack) -> None:
    for role in ("kiosk", "officer", "admin", "ops"):
        with gw(stack, role) as client:
            assert client.whoami().role == role
    refer(stack)
    with gw(stack, "ops") as ops:
        status = ops.system_status()
    assert {s.name: s.health for s in status.services} == dict.fromkeys(
        ("gateway", "detection", "embedding", "watchlist", "docverify"), "SERVING"
    )
    assert status.model_version
    counts = {(c.operation, c.outcome): c.count for c in status.decisions}
    assert counts[("VerifyTraveller", "REFER")] >= 1
    with pytest.raises(PermissionDenied), gw(stack, "officer") as officer:
        officer.system_status()


def test_held_images_expire_and_are_bounded() -> None:
    now = [0.0]
    held = HeldImages(hold_s=10, max_held=2, clock=lambda: now[0])
    doc = docverify_pb2.VerifyRequest(live=common_pb2.Image(data=b"live"), mrz="P<UTO...")
    held.hold("a", doc)
    now[0] = 5
    held.hold("b", doc)
    assert held.get("a").live.data == b"live" and held.get("a").mrz == ""  # the MRZ is never held
    now[0] = 8
    held.hold("c", doc)
    assert held.get("a") is None and len(held) == 2  # the oldest goes first
    now[0] = 15.5
    assert held.get("b") is None and held.get("c") is not None  # b expired at 15, c lives to 18
    held.drop("c")
    assert len(held) == 0
    assert len(HeldImages(hold_s=10, max_held=0)) == 0


def test_enrolment_photos_are_checked_one_by_one_without_enrolling(stack) -> None:
    no_face = next(iter(sorted((FACES / "no_face").iterdir())))
    small = TRAVELLER / "Amram_Mitzna_0001.jpg"  # the dev photo itself: too few pixels between the eyes
    corrupt = b"\xff\xd8\xff\xe0 not really a JPEG"
    with gw(stack, "admin") as admin:
        before = sum(w.subject_count for w in admin.list_watchlists())
        good, group, blank, poor, broken = admin.check_enrolment_photos(
            [LIVE, GROUP, no_face, small, corrupt]
        )
        assert sum(w.subject_count for w in admin.list_watchlists()) == before
    assert good.acceptable and good.quality.acceptable and not good.problem
    assert not group.acceptable and "photos[1]" in group.problem
    assert not blank.acceptable and "photos[2]" in blank.problem and "face" in blank.problem
    assert not poor.acceptable and "photos[3]" in poor.problem
    assert not broken.acceptable and broken.problem
    assert [p.index for p in (good, group, blank, poor, broken)] == [0, 1, 2, 3, 4]
    # the typed reason a program tells refusals apart by (the problem text is for people)
    assert [p.reason for p in (good, group, blank, poor, broken)] == [
        R.REASON_CODE_UNSPECIFIED,
        R.REASON_CODE_MULTIPLE_FACES,
        R.REASON_CODE_NO_FACE,
        R.REASON_CODE_QUALITY_TOO_LOW,
        R.REASON_CODE_INVALID_INPUT,
    ]
    assert [r["operation"] for r in read_records(stack.audit_log)][-2:] == [
        "CheckEnrolmentPhotos",
        "ListWatchlists",
    ]


def test_every_face_rejection_has_its_own_photo_check_reason() -> None:
    kinds = {v for k, v in vars(FaceRejected).items() if k.isupper()}
    assert set(REASON_OF_REJECTION) == kinds  # a new kind must get a code, not crash the check
    assert len(set(REASON_OF_REJECTION.values())) == len(kinds)
    assert {refusal_reason(code) for code in REASON_OF_REJECTION.values()} == {
        "no face",
        "several faces",
        "low quality",
    }
    assert refusal_reason(R.REASON_CODE_INVALID_INPUT) == "unreadable image"
