"""Ids longer than an audit record holds (200 characters): found by the reliability suite's
generated fields, where CreateWatchlist, DeleteWatchlist and RemoveSubject answered INTERNAL and
left no audit record (the audit body refused the long name), and a gate decision could be
computed and then not recorded. Now: INVALID_ARGUMENT before any work for a decision's ids, and
an admin action's refusal is recorded with the name cut to the limit."""

from __future__ import annotations

import grpc
import pytest

from facegate.audit import MAX_ID_CHARS, read_records
from facegate.v1 import common_pb2, docverify_pb2, gateway_pb2, gateway_pb2_grpc, watchlist_pb2
from tests.gateway.conftest import TRAVELLER, gate_frame

pytestmark = pytest.mark.slow

LONG = "x" * (MAX_ID_CHARS + 1)


def rpc(stack, role: str, method: str, request) -> grpc.StatusCode:
    with grpc.insecure_channel(stack.target) as ch:
        stub = gateway_pb2_grpc.GatewayServiceStub(ch)
        try:
            getattr(stub, method)(
                request, metadata=(("authorization", f"Bearer {stack.keys[role]}"),), timeout=120
            )
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        (
            "CreateWatchlist",
            watchlist_pb2.CreateWatchlistRequest(name=LONG, kind=watchlist_pb2.WATCHLIST_KIND_WANTED),
        ),
        ("DeleteWatchlist", watchlist_pb2.DeleteWatchlistRequest(name=LONG)),
        ("RemoveSubject", watchlist_pb2.RemoveSubjectRequest(watchlist="wanted", subject_id=LONG)),
        ("GetSubject", watchlist_pb2.GetSubjectRequest(watchlist=LONG, subject_id=LONG)),
    ],
)
def test_an_admin_call_with_an_overlong_name_is_refused_and_audited(stack, method, request_) -> None:
    before = len(list(read_records(stack.audit_log)))
    assert rpc(stack, "admin", method, request_) == grpc.StatusCode.INVALID_ARGUMENT
    records = list(read_records(stack.audit_log))
    assert len(records) == before + 1
    last = records[-1]
    assert last["operation"] == method and last["outcome"] == "INVALID_ARGUMENT"
    assert all(len(w) <= MAX_ID_CHARS for w in last.get("watchlists", []))
    assert len(last.get("subject_id", "")) <= MAX_ID_CHARS


def test_a_decision_with_an_overlong_gate_id_or_list_is_refused_before_any_work(stack) -> None:
    document = docverify_pb2.VerifyRequest(
        live=common_pb2.Image(data=gate_frame(TRAVELLER / "Amram_Mitzna_0001.jpg")),
        portrait_image=common_pb2.Image(data=(TRAVELLER / "Amram_Mitzna_0002.jpg").read_bytes()),
    )
    before = len(list(read_records(stack.audit_log)))
    for request in (
        gateway_pb2.VerifyTravellerRequest(gate_id=LONG, document=document),
        gateway_pb2.VerifyTravellerRequest(gate_id="gate-1", document=document, watchlists=[LONG]),
    ):
        assert rpc(stack, "kiosk", "VerifyTraveller", request) == grpc.StatusCode.INVALID_ARGUMENT
    identify = gateway_pb2.IdentifyRequest(image=document.live, watchlists=[LONG])
    assert rpc(stack, "officer", "Identify", identify) == grpc.StatusCode.INVALID_ARGUMENT
    assert len(list(read_records(stack.audit_log))) == before  # not decisions: nothing to record
