"""The gateway end to end on real servers: gate decisions, the kiosk's view, officer and admin
tools, fail-closed outages, idempotent retries, roles on the real servicer, and the audit trail."""

from __future__ import annotations

import json
import shutil
import time
import uuid

import grpc
import pytest

from facegate.audit import read_records, verify_log
from facegate.errors import FacegateError, InvalidArgument, PermissionDenied, Unauthenticated
from facegate.gateway_client import Gateway
from facegate.v1 import common_pb2, detection_pb2, gateway_pb2, gateway_pb2_grpc, watchlist_pb2
from tests.docverify.specimens import SPECIMENS
from tests.gateway.conftest import OTHER_PERSON, TRAVELLER, gate_frame, sibling_settings
from tests.support import FACES, stopped

pytestmark = pytest.mark.slow

TD3 = next(s for s in SPECIMENS if s["file"] == "passports_ICAO_Utopia_TD3_hires.jpg")
LIVE = gate_frame(TRAVELLER / "Amram_Mitzna_0001.jpg")
PORTRAIT = (TRAVELLER / "Amram_Mitzna_0002.jpg").read_bytes()
GROUP = FACES / "multi_face/2008_001009.jpg"


def gw(stack, role: str | None, **kwargs) -> Gateway:
    return Gateway(stack.target, key=stack.keys[role] if role else "", timeout=120, **kwargs)


def verify(stack, live: bytes = LIVE, portrait: bytes = PORTRAIT, **kwargs):
    with gw(stack, "kiosk") as kiosk:
        return kiosk.verify_traveller(live, portrait=portrait, **kwargs)


def full(stack, decision_id: str) -> gateway_pb2.AuditRecord:
    with gw(stack, "officer") as officer:
        return officer.audit_record(decision_id)


def codes(record: gateway_pb2.AuditRecord) -> set[str]:
    return {common_pb2.ReasonCode.Name(r.code).removeprefix("REASON_CODE_") for r in record.decision.reasons}


# ---- gate decisions --------------------------------------------------------------------------


def test_same_person_is_accepted_with_reasons_scores_and_model(stack) -> None:
    decision = verify(stack, gate_id="gate-1")
    assert decision.outcome == "ACCEPT" and decision.instruction == "Please proceed"
    assert set(decision.reason_codes) == {"MATCH", "WATCHLIST_CLEAR"}
    (score,) = decision.scores
    assert (
        score.name == "document_similarity"
        and score.value >= score.threshold > 0
        and score.target_far == 0.001
    )
    # The threshold of the portrait's source and size band, with the FAR it gave on its calibration set.
    assert score.calibration.startswith("image, ") and score.calibration.endswith("px between the eyes")
    assert 0 < score.measured_far <= 0.001
    assert decision.model_version and decision.request_id and {"verify", "screen"} <= set(decision.timings_ms)
    record = full(stack, decision.decision_id)
    assert record.gate_id == "gate-1" and record.role == "kiosk" and record.method == "VerifyTraveller"
    kept = next(s for s in record.decision.scores if s.name == "document_similarity")
    # The audit keeps which calibration set the threshold (the kiosk saw the 1:1 score only).
    assert kept.calibration == score.calibration and kept.measured_far == pytest.approx(score.measured_far)


def test_different_person_is_referred_and_the_kiosk_sees_no_reasons(stack) -> None:
    decision = verify(stack, portrait=OTHER_PERSON.read_bytes())
    assert decision.outcome == "REFER" and decision.instruction == "Please see an officer"
    assert decision.reasons == () and decision.scores == ()
    assert "NO_MATCH" in codes(full(stack, decision.decision_id))


def test_the_audit_append_of_a_decision_is_timed_as_a_stage(stack) -> None:
    """The decision's one disk wait (record write + fsync) shows in the stage metric: the kiosk
    bench reads it to say how much of a decision the audit trail costs."""
    from prometheus_client import REGISTRY

    def count() -> float:
        return REGISTRY.get_sample_value("facegate_gateway_stage_seconds_count", {"stage": "audit"}) or 0.0

    before = count()
    assert verify(stack, gate_id="gate-audit-timing").outcome == "ACCEPT"
    assert count() == before + 1


@pytest.mark.parametrize(
    "live,instruction,reason",
    [
        (gate_frame(FACES / "no_face/skimage_coffee.png"), "Please look at the camera", "NO_FACE"),
        (gate_frame(GROUP), "Only one person at a time, please", "MULTIPLE_FACES"),
        ((TRAVELLER / "Amram_Mitzna_0001.jpg").read_bytes(), "Please step closer", "QUALITY_TOO_LOW"),
    ],
    ids=["no-face", "several-faces", "face-too-small"],
)
def test_capture_problems_ask_the_traveller_to_retry(
    stack, live: bytes, instruction: str, reason: str
) -> None:
    decision = verify(stack, live=live)
    assert decision.outcome == "RETRY" and decision.instruction == instruction
    assert reason in decision.reason_codes


def test_expired_or_invalid_mrz_is_referred(stack) -> None:
    mrz = "\n".join(TD3["mrz"])
    assert verify(stack, mrz=mrz).outcome == "REFER"  # the Utopia specimen expired before today
    expired = full(stack, verify(stack, mrz=mrz).decision_id)
    assert "DOCUMENT_EXPIRED" in codes(expired)
    broken = mrz[:-1] + ("1" if mrz[-1] != "1" else "2")
    invalid = full(stack, verify(stack, mrz=broken).decision_id)
    assert invalid.decision.outcome == common_pb2.OUTCOME_REFER and "MRZ_INVALID" in codes(invalid)


def test_a_bad_live_image_is_a_precise_error_not_a_decision(stack) -> None:
    with pytest.raises(InvalidArgument) as err:
        verify(stack, live=b"\xff\xd8\xff\xe0 truncated jpeg")
    assert "live image" in err.value.message
    with pytest.raises(InvalidArgument):
        verify(stack, live=b"")


def test_a_watchlist_hit_refers_without_telling_the_kiosk(stack) -> None:
    name = "wanted_" + uuid.uuid4().hex[:8]
    with gw(stack, "admin") as admin:
        admin.create_watchlist(name, "wanted")
        enrolled = admin.enroll(name, [LIVE], info=watchlist_pb2.SubjectInfo(category="wanted"))
        subject_id = enrolled.subject.subject_id
    try:
        decision = verify(stack, gate_id="gate-9", watchlists=[name])
        assert decision.outcome == "REFER" and decision.reasons == () and decision.scores == ()
        assert "WATCHLIST" not in json.dumps(decision.to_dict())
        record = full(stack, decision.decision_id)
        assert "WATCHLIST_HIT" in codes(record) and [c.subject_id for c in record.candidates] == [subject_id]
        with gw(stack, "officer") as officer:
            queue = officer.referrals(gate_id="gate-9")
            assert queue[0].decision.decision_id == decision.decision_id
            hit, candidates = officer.identify(PORTRAIT, watchlists=[name])
        assert hit.outcome == "REFER" and [c.subject_id for c in candidates] == [subject_id]
    finally:
        with gw(stack, "admin") as admin:
            admin.delete_watchlist(name)
    assert verify(stack, watchlists=[name]).outcome == "REFER"  # the list is gone: screening cannot run


def test_the_screening_runs_at_the_configured_calibrated_far(stack, tmp_path) -> None:
    """FACEGATE_GATEWAY_SCREEN_FAR picks the screening's calibrated operating point, and the audit
    record says which; a FAR the calibration does not hold refers the traveller and says why."""
    from facegate.thresholds import load_thresholds
    from gateway.server import GatewayService
    from services.runtime.config import RuntimeSettings, load_settings
    from tests.support import serve

    def decide(far: float) -> dict:
        log = tmp_path / f"audit-{far:g}.log"
        servicer = GatewayService(
            sibling_settings(stack, log, screen_far=far), load_settings(RuntimeSettings)
        )
        try:
            with serve(servicer, label="gateway-screen-far") as running:
                target = f"127.0.0.1:{running.port}"
                with Gateway(target, key=stack.keys["kiosk"], timeout=120) as kiosk:
                    decision = kiosk.verify_traveller(LIVE, portrait=PORTRAIT)
        finally:
            servicer.close()
        (record,) = [r for r in read_records(log) if r.get("decision_id") == decision.decision_id]
        return record

    strict = decide(1e-4)
    assert strict["outcome"] == "ACCEPT"
    (screen,) = [s for s in strict["scores"] if s["name"] == "watchlist_top1"]
    point = load_thresholds(strict["model_version"]).at_far(1e-4)
    assert screen["target_far"] == pytest.approx(1e-4) and screen["threshold"] == pytest.approx(
        point.threshold
    )
    odd = decide(0.05)
    assert odd["outcome"] == "REFER"
    (reason,) = [r for r in odd["reasons"] if r["code"] == "SERVICE_UNAVAILABLE"]
    assert "no threshold calibrated for FAR 0.05" in reason["message"]


# ---- officer and admin tools -----------------------------------------------------------------


def test_officer_compare_and_detect(stack) -> None:
    with gw(stack, "officer") as officer:
        same = officer.compare(LIVE, PORTRAIT)
        other = officer.compare(LIVE, OTHER_PERSON.read_bytes())
        faces = officer.detect(GROUP.read_bytes())
    assert same.outcome == "ACCEPT" and same.reason_codes == ("MATCH",)
    assert other.outcome == "REFER" and other.reason_codes == ("NO_MATCH",)
    assert same.scores[0].threshold == other.scores[0].threshold > 0
    assert len(faces) >= 2


def test_enrolment_refuses_each_bad_photo_by_index_and_enrols_nothing(stack) -> None:
    name = "enrol_" + uuid.uuid4().hex[:8]
    with gw(stack, "admin") as admin:
        admin.create_watchlist(name, "alert")
        try:
            with pytest.raises(InvalidArgument) as err:
                admin.enroll(name, [LIVE, GROUP.read_bytes(), b"not an image"])
            assert "2 of 3 photos refused" in err.value.message
            assert "photos[1]" in err.value.message and "photos[2]" in err.value.message
            assert "photos[0]" not in err.value.message
            assert admin.list_subjects(name).subjects == []
            store_photos = gateway_pb2.EnrollFromPhotosRequest(
                watchlist=name, photos=[common_pb2.Image(data=LIVE)], store_photos=True
            )
            with pytest.raises(grpc.RpcError) as refused:
                admin.stub.EnrollFromPhotos(
                    store_photos, metadata=(("authorization", f"Bearer {stack.keys['admin']}"),)
                )
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # templates only, never photos
            enrolled = admin.enroll(name, [LIVE], idempotency_key="k-1")
            assert enrolled.created and len(enrolled.subject.templates) == 1
            assert not admin.enroll(
                name, [LIVE], idempotency_key="k-1"
            ).created  # a replay, not a second subject
        finally:
            admin.delete_watchlist(name)


# ---- fail closed -------------------------------------------------------------------------------


#: How soon after a service returns the gate must accept again (channels reconnect within 2 s).
RECOVERY_S = 10.0


@pytest.mark.parametrize("service", ["detection", "embedding", "watchlist", "docverify"])
def test_a_stopped_service_refers_never_accepts_and_recovers(stack, service: str) -> None:
    assert verify(stack).outcome == "ACCEPT"
    with stopped(getattr(stack, service)):
        for _ in range(2):
            decision = verify(stack)
            assert decision.outcome == "REFER"
            assert "SERVICE_UNAVAILABLE" in codes(full(stack, decision.decision_id))
    returned = time.monotonic()
    outcomes = []
    while time.monotonic() - returned < RECOVERY_S and outcomes[-1:] != ["ACCEPT"]:
        outcomes.append(verify(stack).outcome)
        time.sleep(0.2)
    assert outcomes[-1] == "ACCEPT", outcomes
    assert set(outcomes) <= {"REFER", "ACCEPT"}


def test_without_redis_the_decisions_are_the_same(stack, tmp_path) -> None:
    from gateway.replay import ReplayCache

    servicer = stack.servicer
    original = servicer.replay
    servicer.replay = ReplayCache("redis://127.0.0.1:1/0", timeout_ms=50)  # nothing listens there
    try:
        assert verify(stack).outcome == "ACCEPT"
        assert verify(stack, portrait=OTHER_PERSON.read_bytes()).outcome == "REFER"
    finally:
        servicer.replay.close()
        servicer.replay = original


def test_the_same_request_id_twice_gives_one_decision_and_one_record(stack) -> None:
    rid = "kiosk-retry-" + uuid.uuid4().hex
    first = verify(stack, request_id=rid)
    again = verify(stack, request_id=rid)
    assert first == again and first.request_id == rid
    records = [r for r in read_records(stack.audit_log) if r.get("request_id") == rid]
    assert len(records) == 1


def test_a_saturated_gateway_refuses_at_once_instead_of_queueing(stack) -> None:
    slots = stack.servicer._slots
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    try:
        with pytest.raises(FacegateError) as err:
            verify(stack)
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        for _ in range(taken):
            slots.release()
    assert verify(stack).outcome == "ACCEPT"


# ---- roles on the real servicer ----------------------------------------------------------------

ALLOWED = {
    "VerifyTraveller": {"kiosk"},
    "VerifyTravellerStream": {"kiosk"},
    "Identify": {"officer"},
    "Compare": {"officer"},
    "Detect": {"officer"},
    "ListReferrals": {"officer"},
    "GetAuditRecord": {"officer", "ops"},
    "GetReferral": {"officer"},
    "RecordReferralOutcome": {"officer"},
    "ConfirmWatchlistHit": {"officer"},
    "WhoAmI": {"kiosk", "officer", "admin", "ops"},
    "GetSystemStatus": {"ops"},
}
REQUESTS = {
    "VerifyTraveller": gateway_pb2.VerifyTravellerRequest(),
    "VerifyTravellerStream": gateway_pb2.VerifyTravellerStreamRequest(),  # sent as a one-message stream
    "Identify": gateway_pb2.IdentifyRequest(),
    "Compare": gateway_pb2.CompareRequest(),
    "Detect": detection_pb2.DetectRequest(),
    "EnrollFromPhotos": gateway_pb2.EnrollFromPhotosRequest(),
    "RemoveSubject": watchlist_pb2.RemoveSubjectRequest(),
    "GetSubject": watchlist_pb2.GetSubjectRequest(),
    "ListSubjects": watchlist_pb2.ListSubjectsRequest(watchlist="no_such_list"),
    "CreateWatchlist": watchlist_pb2.CreateWatchlistRequest(),
    "ListWatchlists": watchlist_pb2.ListWatchlistsRequest(),
    "DeleteWatchlist": watchlist_pb2.DeleteWatchlistRequest(),
    "GetAuditRecord": gateway_pb2.GetAuditRecordRequest(),
    "ListReferrals": gateway_pb2.ListReferralsRequest(),
    "GetReferral": gateway_pb2.GetReferralRequest(),
    "RecordReferralOutcome": gateway_pb2.RecordReferralOutcomeRequest(),
    "ConfirmWatchlistHit": gateway_pb2.ConfirmWatchlistHitRequest(),
    "WhoAmI": gateway_pb2.WhoAmIRequest(),
    "GetSystemStatus": gateway_pb2.GetSystemStatusRequest(),
    "CheckEnrolmentPhotos": gateway_pb2.CheckEnrolmentPhotosRequest(),
}


def test_every_rpc_checks_the_callers_role(stack) -> None:
    methods = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].methods_by_name
    assert set(methods) == set(REQUESTS)
    refused_before = sum(1 for r in read_records(stack.audit_log) if r["outcome"] == "REFUSED")
    refusals = 0
    with grpc.insecure_channel(stack.target) as ch:
        stub = gateway_pb2_grpc.GatewayServiceStub(ch)
        for method, request in REQUESTS.items():
            allowed = ALLOWED.get(method, {"admin"})
            for role in (None, "unknown", "kiosk", "officer", "admin", "ops"):
                key = {None: None, "unknown": "fg_admin-00000000_forged"}.get(
                    role, stack.keys.get(role or "")
                )
                metadata = (("authorization", f"Bearer {key}"),) if key else ()
                try:
                    if methods[method].client_streaming:
                        list(getattr(stub, method)(iter([request]), metadata=metadata, timeout=60))
                    else:
                        getattr(stub, method)(request, metadata=metadata, timeout=60)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                refusals += code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
                if role in (None, "unknown"):
                    assert code == grpc.StatusCode.UNAUTHENTICATED, (method, role)
                elif role in allowed:
                    assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), (
                        method,
                        role,
                    )
                else:
                    assert code == grpc.StatusCode.PERMISSION_DENIED, (method, role)

    refused = [r for r in read_records(stack.audit_log) if r["outcome"] == "REFUSED"]
    assert len(refused) - refused_before == refusals  # every refusal is audited


def test_sdk_raises_the_auth_errors(stack) -> None:
    with pytest.raises(Unauthenticated), Gateway(stack.target, key="") as anonymous:
        anonymous.list_watchlists()
    with pytest.raises(PermissionDenied), gw(stack, "kiosk") as kiosk:
        kiosk.list_watchlists()


# ---- the audit trail ----------------------------------------------------------------------------


def test_the_audit_trail_verifies_and_names_a_tampered_record(stack, tmp_path) -> None:
    verify(stack)
    verify(stack, portrait=OTHER_PERSON.read_bytes())
    result = verify_log(stack.audit_log)
    assert result.ok and result.records >= 2
    lines = stack.audit_log.read_bytes().splitlines(keepends=True)
    body = b"".join(lines)
    assert b"Amram" not in body and b"authorization" not in body
    assert all(key.encode() not in body for key in stack.keys.values())

    edited = tmp_path / "edited.log"
    record = json.loads(lines[1])
    record["outcome"] = "ACCEPT" if record["outcome"] != "ACCEPT" else "REFER"
    edited.write_bytes(
        lines[0]
        + json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        + b"\n"
        + b"".join(lines[2:])
    )
    deleted = tmp_path / "deleted.log"
    deleted.write_bytes(lines[0] + b"".join(lines[2:]))
    swapped = tmp_path / "swapped.log"
    swapped.write_bytes(lines[1] + lines[0] + b"".join(lines[2:]))
    assert verify_log(edited).line == 2
    assert verify_log(deleted).line == 2
    assert verify_log(swapped).line == 1
    shutil.copy(stack.audit_log, tmp_path / "copy.log")
    assert verify_log(tmp_path / "copy.log").ok


# ---- metrics ------------------------------------------------------------------------------------


def test_the_readme_names_exactly_the_metrics_the_gateway_exports(stack) -> None:
    import re
    import urllib.request

    from tests.support import REPO

    verify(stack)  # every labelled family has at least one series
    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- metrics:gateway:start -->")[1].split("<!-- metrics:gateway:end -->")[0]
    documented = set(re.findall(r"^\| `(facegate_gateway_\w+)`", table, flags=re.M))
    scrape = (
        urllib.request.urlopen(f"http://127.0.0.1:{stack.gateway.metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    families = set(re.findall(r"^# TYPE (facegate_gateway_\w+) (\w+)", scrape, flags=re.M))
    exported = {
        name + "_total" if kind == "counter" and not name.endswith("_total") else name
        for name, kind in families
        if not name.endswith("_created")  # prometheus_client's creation-time gauge of each counter
    }
    assert documented == exported
