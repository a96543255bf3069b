"""Referrals across gateway replicas (``FACEGATE_GATEWAY_PEERS``), on real servers: two gateway
replicas with their own audit logs in front of the session's real stack, and a third whose other
peer is a port nothing listens on. An officer on either replica sees and works the other's
referrals; the owner applies its rules, writes the audit record and holds the images."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from facegate.audit import read_records
from facegate.errors import FailedPrecondition, NotFound, Unavailable
from facegate.gateway_client import Gateway
from facegate.v1 import common_pb2, gateway_pb2
from gateway.peers import PEER_HEADER, Peers, parse_targets
from tests.gateway.conftest import OTHER_PERSON, TRAVELLER, gate_frame, sibling_settings
from tests.support import free_ports, serve

pytestmark = pytest.mark.slow

LIVE = gate_frame(TRAVELLER / "Amram_Mitzna_0001.jpg")


@dataclass
class Replica:
    target: str
    peer_port: int
    audit_log: Path
    servicer: object


def replica(
    stack, root: Path, name: str, peer_port: int, peers: str, exits: ExitStack, peer_timeout_s: float = 10
) -> Replica:
    """A gateway replica on the session stack's services: its own audit log, the stack's keys."""
    from gateway.server import GatewayService
    from services.runtime.config import RuntimeSettings, load_settings

    settings = sibling_settings(
        stack, root / f"{name}.log", peers=peers, peer_port=peer_port, peer_timeout_s=peer_timeout_s
    )
    servicer = GatewayService(settings, load_settings(RuntimeSettings))
    exits.callback(servicer.close)
    running = exits.enter_context(serve(servicer, label=f"gateway-{name}"))
    return Replica(f"127.0.0.1:{running.port}", peer_port, root / f"{name}.log", servicer)


@pytest.fixture(scope="module")
def replicas(stack, tmp_path_factory) -> Iterator[dict[str, Replica]]:
    """a and b peers of each other; c's peers are a and a port nothing listens on."""
    root = tmp_path_factory.mktemp("peers")
    a_port, b_port, c_port, dead = free_ports(4)
    with ExitStack() as exits:
        out = {
            "a": replica(stack, root, "a", a_port, f"127.0.0.1:{a_port},127.0.0.1:{b_port}", exits),
            "b": replica(stack, root, "b", b_port, f"127.0.0.1:{a_port},127.0.0.1:{b_port}", exits),
            "c": replica(stack, root, "c", c_port, f"127.0.0.1:{a_port},127.0.0.1:{dead}", exits),
        }
        out["dead"] = Replica(f"127.0.0.1:{dead}", dead, root / "none.log", None)
        yield out


def client(stack, target: str, role: str) -> Gateway:
    return Gateway(target, key=stack.keys[role], timeout=120)


def refer_on(stack, target: str) -> str:
    with client(stack, target, "kiosk") as kiosk:
        decision = kiosk.verify_traveller(LIVE, portrait=OTHER_PERSON.read_bytes(), gate_id="gate-p")
    assert decision.outcome == "REFER"
    return decision.decision_id


def about(log: Path, decision_id: str) -> list[tuple[str, str, str]]:
    return [
        (r["operation"], r["outcome"], r["caller"])
        for r in read_records(log)
        if r.get("refers_to") == decision_id
    ]


def test_an_officer_on_one_replica_works_a_referral_decided_on_another(stack, replicas) -> None:
    a, b = replicas["a"], replicas["b"]
    decision_id = refer_on(stack, a.target)
    with client(stack, b.target, "officer") as officer:
        queue = officer.referrals(open_only=True)
        assert decision_id in [r.decision.decision_id for r in queue] and queue.unreachable_peers == []
        referral = officer.referral(decision_id)  # b holds neither the record nor the images
        assert referral.images_held and referral.live.data == LIVE
        assert referral.portrait.data == OTHER_PERSON.read_bytes() and referral.record.gate_id == "gate-p"
        assert officer.audit_record(decision_id).decision.outcome == common_pb2.OUTCOME_REFER
        me = officer.whoami().key_id
        with pytest.raises(FailedPrecondition, match="no watchlist hit"):
            officer.confirm_watchlist_hit(decision_id)  # the owner's rule, the owner's refusal
        closed = officer.record_referral_outcome(decision_id, "admitted")
        assert closed.outcome == gateway_pb2.REFERRAL_OUTCOME_ADMITTED and closed.outcome_by == me
        assert not closed.images_held
        assert decision_id not in [r.decision.decision_id for r in officer.referrals(open_only=True)]
    assert a.servicer.held.get(decision_id) is None  # dropped by the replica that held them
    with (
        client(stack, a.target, "officer") as other_desk,
        pytest.raises(FailedPrecondition, match="already closed"),
    ):
        other_desk.record_referral_outcome(decision_id, "refused")
    # Every action is in the owner's chain under the officer's own key id; b wrote none.
    assert about(a.audit_log, decision_id) == [
        ("ConfirmWatchlistHit", "FAILED_PRECONDITION", me),
        ("RecordReferralOutcome", "ADMITTED", me),
        ("RecordReferralOutcome", "FAILED_PRECONDITION", me),
    ]
    assert about(b.audit_log, decision_id) == []


def test_the_queue_merges_every_replica_newest_first(stack, replicas) -> None:
    older, newer = refer_on(stack, replicas["b"].target), refer_on(stack, replicas["a"].target)
    for target in (replicas["a"].target, replicas["b"].target):
        with client(stack, target, "officer") as officer:
            ids = [r.decision.decision_id for r in officer.referrals(limit=500)]
        assert ids.index(newer) < ids.index(older) and len(ids) == len(set(ids))
        with client(stack, target, "officer") as officer:
            assert [r.decision.decision_id for r in officer.referrals(limit=1)] == [newer]


def test_a_decision_no_replica_holds_is_not_found_and_never_forwarded_twice(stack, replicas) -> None:
    unknown = uuid.uuid4().hex
    with client(stack, replicas["b"].target, "officer") as officer:
        with pytest.raises(NotFound, match="no gateway replica holds"):
            officer.referral(unknown)
        # A call marked as forwarded is answered by the replica itself: b does not hold a's referral.
        held_by_a = refer_on(stack, replicas["a"].target)
        metadata = [("authorization", f"Bearer {stack.keys['officer']}"), (PEER_HEADER, "1")]
        with pytest.raises(grpc.RpcError) as err:
            officer.stub.GetReferral(
                gateway_pb2.GetReferralRequest(decision_id=held_by_a), metadata=metadata, timeout=30
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        officer.record_referral_outcome(held_by_a, "escalated")


def test_a_silent_replica_makes_the_queue_incomplete_and_says_so(stack, replicas) -> None:
    a, c, dead = replicas["a"], replicas["c"], replicas["dead"]
    decision_id = refer_on(stack, a.target)
    with client(stack, c.target, "officer") as officer:
        queue = officer.referrals(open_only=True)
        assert decision_id in [r.decision.decision_id for r in queue]
        assert queue.unreachable_peers == [dead.target]
        assert officer.referral(decision_id).images_held  # the owner answered
        with pytest.raises(Unavailable, match="1 peer\\(s\\) did not answer"):
            officer.referral(uuid.uuid4().hex)  # it might be on the silent one: not "not found"
        officer.record_referral_outcome(decision_id, "admitted")


def unanswered() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("facegate_gateway_peer_unanswered_total") or 0.0


def hung_peer(release: threading.Event, exits: ExitStack, calls: list[str] | None = None) -> str:
    """A gRPC server that takes every call and answers none until ``release`` (a stuck replica);
    ``calls`` collects the method of each call it took."""

    class Hang(grpc.GenericRpcHandler):
        def service(self, handler_call_details):
            if calls is not None:
                calls.append(handler_call_details.method.rsplit("/", 1)[-1])
            return grpc.unary_unary_rpc_method_handler(lambda request, context: release.wait(120) and b"")

    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((Hang(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    exits.callback(server.stop, 0)
    exits.callback(release.set)  # first: let the stuck handlers return
    return f"127.0.0.1:{port}"


def test_the_owner_answers_without_waiting_for_a_peer_that_hangs(stack, replicas, tmp_path) -> None:
    """A replica that takes the call and never answers would hold the officer for its whole peer
    timeout (60 s here) unless the owner's answer is taken as soon as it comes: the officer's own
    deadline (20 s) would expire first."""
    (port,) = free_ports(1)
    a = replicas["a"]
    with ExitStack() as exits:
        stuck = hung_peer(threading.Event(), exits)
        d = replica(stack, tmp_path, "d", port, f"{stuck},127.0.0.1:{a.peer_port}", exits, peer_timeout_s=60)
        decision_id = refer_on(stack, a.target)
        with Gateway(d.target, key=stack.keys["officer"], timeout=20) as officer:
            assert officer.referral(decision_id).images_held
            officer.record_referral_outcome(decision_id, "admitted")


def test_a_peer_that_ran_out_of_time_is_not_asked_again_at_once(stack, replicas, tmp_path) -> None:
    """The console refreshes the queue every second; a stuck replica must not cost each refresh
    the peer timeout. After one timed-out call it is listed as unreachable without being asked."""
    (port,) = free_ports(1)
    taken: list[str] = []
    with ExitStack() as exits:
        stuck = hung_peer(threading.Event(), exits, taken)
        a = replicas["a"]
        e = replica(stack, tmp_path, "e", port, f"{stuck},127.0.0.1:{a.peer_port}", exits, peer_timeout_s=1)
        decision_id = refer_on(stack, a.target)
        before = unanswered()
        with client(stack, e.target, "officer") as officer:
            for _ in range(3):
                queue = officer.referrals(open_only=True)
                assert queue.unreachable_peers == [stuck]
                assert decision_id in [r.decision.decision_id for r in queue]  # a still answers
            assert unanswered() == before + 3  # counted each time, asked once (the ops alert's metric)
            officer.record_referral_outcome(decision_id, "admitted")
    assert taken.count("ListReferrals") == 1


def test_peer_targets_skip_this_replica_and_name_bad_entries() -> None:
    assert parse_targets(" a:1 , [::1]:2,") == [("a", 1), ("::1", 2)]
    for bad in ("a", "a:", ":5", "a:x", "a:70000"):
        with pytest.raises(ValueError, match="is not host:port"):
            parse_targets(bad)
    addresses = {"gateway-headless": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]}
    peers = Peers(
        "gateway-headless:50058,127.0.0.1:50058",
        own_port=50058,
        timeout_s=1,
        resolve=lambda host, port: addresses.get(host, [host]),
        own=frozenset({"10.0.0.2", "127.0.0.1"}),
    )
    try:
        assert peers.targets() == ["10.0.0.1:50058", "10.0.0.3:50058"]
        addresses["gateway-headless"].append("10.0.0.4")  # a replica the autoscaler added
        assert "10.0.0.4:50058" in peers.targets()
    finally:
        peers.close()


def test_a_replica_gone_from_dns_has_its_channel_closed() -> None:
    """Pods come and go under an autoscaler: a channel to an address that no longer resolves is
    closed once it has been gone for ``forget_after_s``, while the replicas still there keep theirs."""
    port, own_port = free_ports(2)
    addresses = {"gateway-headless": ["127.0.0.1", "127.0.0.2"]}
    peers = Peers(
        f"gateway-headless:{port}",
        own_port=own_port,
        timeout_s=1,
        resolve=lambda host, port: addresses.get(host, [host]),
        own=frozenset(),
        forget_after_s=0,
    )
    try:
        _, unreachable = peers.list_referrals(gateway_pb2.ListReferralsRequest(), [])
        assert sorted(unreachable) == peers.dialled() == [f"127.0.0.1:{port}", f"127.0.0.2:{port}"]
        addresses["gateway-headless"] = ["127.0.0.2"]  # the first pod went away
        _, unreachable = peers.list_referrals(gateway_pb2.ListReferralsRequest(), [])
        assert unreachable == peers.dialled() == [f"127.0.0.2:{port}"]
    finally:
        peers.close()


def test_peer_settings_fail_fast() -> None:
    from gateway.config import GatewaySettings
    from services.runtime.config import ConfigError, load_settings

    for overrides, message in (
        ({"peers": "gateway-headless:50058"}, "PEERS needs PEER_PORT"),
        ({"peers": "gateway-headless", "peer_port": 50058}, "is not host:port"),
        ({"peer_port": 0}, "fixed port"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_settings(GatewaySettings, **overrides)
