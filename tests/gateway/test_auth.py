"""API keys and the role interceptor on real gRPC servers (loopback).

Every GatewayService RPC (enumerated from the generated descriptor, so a new RPC without a role
entry fails here) is called with no key, a malformed header, an unknown key, a revoked key and each
role's key, both on a bare grpc.server with only the role interceptor and behind the shared
runtime's interceptor. Also: the handler never runs when refused, the failure metric by reason,
the refusal hook, the caller contextvar in all four RPC kinds, open health/reflection, live
revocation through the key file, dev-key generation and the key CLI.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from prometheus_client import REGISTRY

from facegate.v1 import gateway_pb2, gateway_pb2_grpc
from gateway import keys as keymod
from gateway.auth import METHOD_ROLES, Caller, RoleInterceptor, bearer_token, current_caller
from gateway.auth_metrics import REASONS
from gateway.keys import KeyFileError, KeyRing
from tests.support import serve

GATEWAY = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]
RPCS = [m.name for m in GATEWAY.methods]
ROLES = ("kiosk", "officer", "admin", "ops")

#: The issue's role table, written out independently of gateway.auth.METHOD_ROLES.
EXPECTED_ROLES: dict[str, set[str]] = {
    "VerifyTraveller": {"kiosk"},
    "VerifyTravellerStream": {"kiosk"},
    "Identify": {"officer"},
    "Compare": {"officer"},
    "Detect": {"officer"},
    "ListReferrals": {"officer"},
    "EnrollFromPhotos": {"admin"},
    "RemoveSubject": {"admin"},
    "GetSubject": {"admin"},
    "ListSubjects": {"admin"},
    "CreateWatchlist": {"admin"},
    "ListWatchlists": {"admin"},
    "DeleteWatchlist": {"admin"},
    "GetAuditRecord": {"officer", "ops"},
    "GetReferral": {"officer"},
    "RecordReferralOutcome": {"officer"},
    "ConfirmWatchlistHit": {"officer"},
    "WhoAmI": {"kiosk", "officer", "admin", "ops"},
    "GetSystemStatus": {"ops"},
    "CheckEnrolmentPhotos": {"admin"},
}

OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED

#: How a call presents itself: no key, a malformed header, an unknown key, a revoked key, each role.
CASES = ("no_key", "malformed", "unknown_key", "revoked_key", *ROLES)


# ---- a gateway that only echoes ---------------------------------------------------------------


class EchoGateway(gateway_pb2_grpc.GatewayServiceServicer):
    """Implements every GatewayService RPC by counting the call and returning an empty response."""

    service_names = (GATEWAY.full_name,)

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.callers: dict[str, Caller | None] = {}
        self.interceptors: tuple[grpc.ServerInterceptor, ...] = ()
        self._lock = threading.Lock()

    def register(self, server: grpc.Server) -> None:
        gateway_pb2_grpc.add_GatewayServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass

    def ran(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1
            self.callers[name] = current_caller()


def _echo(method: Any) -> Any:
    response = message_factory.GetMessageClass(method.output_type)
    name = method.name
    if method.server_streaming:

        def stream(self: EchoGateway, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self.ran(name)
            yield response()

        return stream

    def unary(self: EchoGateway, request: Any, context: grpc.ServicerContext) -> Any:
        self.ran(name)
        return response()

    return unary


for _method in GATEWAY.methods:  # every RPC of the descriptor, including ones added later
    setattr(EchoGateway, _method.name, _echo(_method))


def call(ch: grpc.Channel, name: str, metadata: Any = None) -> grpc.StatusCode:
    """Call ``name`` with an empty request as its descriptor says (unary or streaming); its status."""
    method = GATEWAY.methods_by_name[name]
    request = message_factory.GetMessageClass(method.input_type)
    response = message_factory.GetMessageClass(method.output_type)
    factory = {
        (False, False): ch.unary_unary,
        (False, True): ch.unary_stream,
        (True, False): ch.stream_unary,
        (True, True): ch.stream_stream,
    }[(method.client_streaming, method.server_streaming)]
    stub = factory(
        f"/{GATEWAY.full_name}/{name}",
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
    )
    payload = iter([request()]) if method.client_streaming else request()
    try:
        result = stub(payload, metadata=metadata, timeout=10)
        if method.server_streaming:
            list(result)
    except grpc.RpcError as exc:
        return exc.code()
    return OK


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value("facegate_gateway_auth_failures_total", {"reason": reason}) or 0.0


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


# ---- fixtures ---------------------------------------------------------------------------------


class KeySet:
    """A key file with one key per role, one revoked key, and the plain keys for the tests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.plain: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        for role in ROLES:
            self.plain[role], entry = keymod.add_key(path, role)
            self.ids[role] = entry.key_id
        self.plain["revoked"], entry = keymod.add_key(path, "officer")
        self.ids["revoked"] = entry.key_id
        keymod.revoke_key(path, entry.key_id)

    def metadata(self, case: str) -> Any:
        if case == "no_key":
            return None
        if case == "malformed":
            return (("authorization", f"Basic {self.plain['officer']}"),)
        if case == "unknown_key":
            return bearer(f"fg_officer-00000000_{'x' * 43}")
        if case == "revoked_key":
            return bearer(self.plain["revoked"])
        return bearer(self.plain[case])


class Hook:
    """Records on_refusal calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None, str | None]] = []

    def __call__(self, method: str, reason: str, key_id: str | None, role: str | None) -> None:
        self.calls.append((method, reason, key_id, role))


@contextlib.contextmanager
def bare_server(
    servicer: EchoGateway | None, interceptor: RoleInterceptor, *extra: grpc.GenericRpcHandler
) -> Iterator[grpc.Channel]:
    """A plain grpc.server with only ``interceptor``, health and reflection; yields a channel to it."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[interceptor])
    if servicer is not None:
        servicer.register(server)
    if extra:
        server.add_generic_rpc_handlers(extra)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((GATEWAY.full_name, health.SERVICE_NAME), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch
    finally:
        server.stop(0)


@pytest.fixture(scope="module")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    return KeySet(tmp_path_factory.mktemp("keys") / "keys.json")


@pytest.fixture(scope="module", params=["bare", "runtime"])
def gateway(
    request: pytest.FixtureRequest, keyset: KeySet
) -> Iterator[tuple[grpc.Channel, EchoGateway, Hook]]:
    """The echo gateway behind the role interceptor: alone, and behind the shared runtime's."""
    hook = Hook()
    servicer = EchoGateway()
    interceptor = RoleInterceptor(KeyRing(keyset.path), on_refusal=hook)
    if request.param == "bare":
        with bare_server(servicer, interceptor) as ch:
            yield ch, servicer, hook
        return
    servicer.interceptors = (interceptor,)
    with (
        serve(servicer, label="gateway-auth-test") as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch,
    ):
        yield ch, servicer, hook


# ---- the role table ---------------------------------------------------------------------------


def test_every_gateway_rpc_has_the_issue_role_entry() -> None:
    """A new RPC in gateway.proto fails here until it gets a row in both tables."""
    for name in RPCS:
        assert name in EXPECTED_ROLES, f"{name}: add it to the role table (gateway/auth.py and this test)"
        assert name in METHOD_ROLES, f"{name} has no entry in gateway.auth.METHOD_ROLES (refused for all)"
        assert set(METHOD_ROLES[name]) == EXPECTED_ROLES[name], name
    assert {role for roles in METHOD_ROLES.values() for role in roles} <= set(keymod.ROLES)
    for name, roles in EXPECTED_ROLES.items():
        assert set(METHOD_ROLES.get(name, ())) == roles, name


# ---- every RPC x every credential -------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("rpc", RPCS)
def test_rpc_status_by_credential(gateway: Any, keyset: KeySet, rpc: str, case: str) -> None:
    ch, servicer, hook = gateway
    path = f"/{GATEWAY.full_name}/{rpc}"
    if case in ROLES:
        allowed = case in EXPECTED_ROLES[rpc]
        expected, reason = (OK, None) if allowed else (PERMISSION_DENIED, "wrong_role")
        who = (keyset.ids[case], case)
    else:
        reason = {"no_key": "missing_key", "malformed": "missing_key"}.get(case, case)
        expected = UNAUTHENTICATED
        who = (keyset.ids["revoked"], "officer") if case == "revoked_key" else (None, None)
    before_metric = {r: failures(r) for r in REASONS}
    before_calls = servicer.calls[rpc]
    before_hook = len(hook.calls)

    assert call(ch, rpc, keyset.metadata(case)) == expected

    after_metric = {r: failures(r) for r in REASONS}
    for r in REASONS:
        assert after_metric[r] - before_metric[r] == (1.0 if r == reason else 0.0), r
    if expected == OK:
        assert servicer.calls[rpc] == before_calls + 1
        assert servicer.callers[rpc] == Caller(*who)
        assert len(hook.calls) == before_hook
    else:
        assert servicer.calls[rpc] == before_calls, "the handler ran for a refused call"
        assert hook.calls[before_hook:] == [(path, reason, *who)]


def test_runtime_counts_refusals_under_their_status(keyset: KeySet) -> None:
    """Behind the runtime's interceptor a refusal is recorded with its real code, not UNKNOWN."""
    servicer = EchoGateway()
    servicer.interceptors = (RoleInterceptor(KeyRing(keyset.path)),)

    def requests(code: str) -> float:
        labels = {"service": "gateway-auth-codes", "method": "Identify", "code": code}
        return REGISTRY.get_sample_value("facegate_rpc_requests_total", labels) or 0.0

    with (
        serve(servicer, label="gateway-auth-codes") as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch,
    ):
        for metadata, code in (
            (None, "UNAUTHENTICATED"),
            (keyset.metadata("kiosk"), "PERMISSION_DENIED"),
            (keyset.metadata("officer"), "OK"),
        ):
            before = requests(code)
            call(ch, "Identify", metadata)
            assert requests(code) == before + 1


# ---- header parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata, token",
    [
        (None, None),
        ((), None),
        ((("authorization", "Bearer fg_a-1_s"),), "fg_a-1_s"),
        ((("authorization", "bearer   fg_a-1_s  "),), "fg_a-1_s"),
        ((("Authorization", "Bearer fg_a-1_s"),), "fg_a-1_s"),
        ((("authorization", "Bearer"),), None),
        ((("authorization", "Bearer "),), None),
        ((("authorization", "Basic fg_a-1_s"),), None),
        ((("authorization", "fg_a-1_s"),), None),
        ((("authorization", "Bearer fg_a-1_s extra"),), None),
        ((("authorization", "Bearer a"), ("authorization", "Bearer b")), None),
        ((("authorization", b"Bearer fg_a-1_s"),), None),
        ((("x-api-key", "fg_a-1_s"),), None),
    ],
)
def test_bearer_token(metadata: Any, token: str | None) -> None:
    assert bearer_token(metadata) == token


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer ", "Token abc", "Bearer a b", "Basic Zm9vOmJhcg=="], ids=repr
)
def test_malformed_headers_are_unauthenticated(gateway: Any, header: str) -> None:
    ch, servicer, _ = gateway
    before, calls = failures("missing_key"), servicer.calls["Identify"]
    assert call(ch, "Identify", (("authorization", header),)) == UNAUTHENTICATED
    assert failures("missing_key") == before + 1
    assert servicer.calls["Identify"] == calls


@pytest.mark.parametrize(
    "key",
    ["", "fg_", "fg__secret", "fg_officer-1_", "not-a-facegate-key", "fg_officer-1_" + "x" * 300],
    ids=repr,
)
def test_keys_of_another_shape_are_unknown(keyset: KeySet, key: str) -> None:
    ring = KeyRing(keyset.path)
    assert ring.identify(key).reason == "unknown_key"
    assert ring.lookup(key) is None


def test_right_id_wrong_secret_is_unknown(keyset: KeySet) -> None:
    ring = KeyRing(keyset.path)
    key = keyset.plain["admin"]
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert ring.identify(forged).reason == "unknown_key"
    assert ring.identify(forged).entry is None
    assert ring.lookup(key) is not None and ring.lookup(key).role == "admin"


# ---- open paths, unknown methods ----------------------------------------------------------------


def test_health_and_reflection_need_no_key(keyset: KeySet) -> None:
    interceptor = RoleInterceptor(KeyRing(keyset.path))
    with bare_server(EchoGateway(), interceptor) as ch:
        before = {r: failures(r) for r in REASONS}
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(ch).get_services()
        assert GATEWAY.full_name in services
        assert {r: failures(r) for r in REASONS} == before


def test_a_registered_method_missing_from_the_table_is_refused_for_every_role(keyset: KeySet) -> None:
    """Fail closed: an RPC nobody put in the table is PERMISSION_DENIED even for valid keys."""
    table = {name: roles for name, roles in METHOD_ROLES.items() if name != "Compare"}
    servicer = EchoGateway()
    with bare_server(servicer, RoleInterceptor(KeyRing(keyset.path), method_roles=table)) as ch:
        for role in ROLES:
            assert call(ch, "Compare", keyset.metadata(role)) == PERMISSION_DENIED
        assert call(ch, "Compare") == UNAUTHENTICATED
        assert servicer.calls["Compare"] == 0
        assert call(ch, "Identify", keyset.metadata("officer")) == OK


def test_another_service_on_the_same_server_is_refused(keyset: KeySet) -> None:
    other = grpc.method_handlers_generic_handler(
        "test.Other", {"Ping": grpc.unary_unary_rpc_method_handler(lambda request, context: b"pong")}
    )
    with bare_server(None, RoleInterceptor(KeyRing(keyset.path)), other) as ch:
        ping = ch.unary_unary("/test.Other/Ping")
        for role in ROLES:
            with pytest.raises(grpc.RpcError) as err:
                ping(b"", metadata=keyset.metadata(role), timeout=10)
            assert err.value.code() == PERMISSION_DENIED


# ---- all four RPC kinds -----------------------------------------------------------------------


def _kind_handlers(ran: Counter[str]) -> grpc.GenericRpcHandler:
    """Raw-bytes handlers of each kind that answer with the caller's key id, at every step."""

    def who() -> bytes:
        caller = current_caller()
        return caller.key_id.encode() if caller else b"<none>"

    def uu(request: bytes, context: grpc.ServicerContext) -> bytes:
        ran["KindUU"] += 1
        return who()

    def us(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        ran["KindUS"] += 1
        for _ in range(3):
            yield who()

    def su(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        ran["KindSU"] += 1
        return who() * len(list(requests))

    def ss(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        ran["KindSS"] += 1
        for _ in requests:
            yield who()

    return grpc.method_handlers_generic_handler(
        GATEWAY.full_name,
        {
            "KindUU": grpc.unary_unary_rpc_method_handler(uu),
            "KindUS": grpc.unary_stream_rpc_method_handler(us),
            "KindSU": grpc.stream_unary_rpc_method_handler(su),
            "KindSS": grpc.stream_stream_rpc_method_handler(ss),
        },
    )


def test_caller_is_set_and_refusals_work_in_all_four_rpc_kinds(keyset: KeySet) -> None:
    ran: Counter[str] = Counter()
    table = {name: frozenset({"officer"}) for name in ("KindUU", "KindUS", "KindSU", "KindSS")}
    interceptor = RoleInterceptor(KeyRing(keyset.path), method_roles=table)
    officer_id = keyset.ids["officer"].encode()
    with bare_server(None, interceptor, _kind_handlers(ran)) as ch:
        base = f"/{GATEWAY.full_name}/"
        uu, us = ch.unary_unary(base + "KindUU"), ch.unary_stream(base + "KindUS")
        su, ss = ch.stream_unary(base + "KindSU"), ch.stream_stream(base + "KindSS")
        calls = {
            "KindUU": lambda md: [uu(b"x", metadata=md, timeout=10)],
            "KindUS": lambda md: list(us(b"x", metadata=md, timeout=10)),
            "KindSU": lambda md: [su(iter([b"a", b"b"]), metadata=md, timeout=10)],
            "KindSS": lambda md: list(ss(iter([b"a", b"b", b"c"]), metadata=md, timeout=10)),
        }
        expected = {
            "KindUU": [officer_id],
            "KindUS": [officer_id] * 3,
            "KindSU": [officer_id * 2],
            "KindSS": [officer_id] * 3,
        }
        for name, do in calls.items():
            assert do(keyset.metadata("officer")) == expected[name], name
            for case, code in (("no_key", UNAUTHENTICATED), ("revoked_key", UNAUTHENTICATED)):
                with pytest.raises(grpc.RpcError) as err:
                    do(keyset.metadata(case))
                assert err.value.code() == code, (name, case)
            with pytest.raises(grpc.RpcError) as err:
                do(keyset.metadata("kiosk"))
            assert err.value.code() == PERMISSION_DENIED, name
            assert ran[name] == 1, f"{name} handler ran for a refused call"
    assert current_caller() is None


def test_a_failing_refusal_hook_still_refuses(keyset: KeySet) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("audit store down")

    servicer = EchoGateway()
    with bare_server(servicer, RoleInterceptor(KeyRing(keyset.path), on_refusal=broken)) as ch:
        assert call(ch, "Identify") == UNAUTHENTICATED
        assert call(ch, "Identify", keyset.metadata("kiosk")) == PERMISSION_DENIED
    assert servicer.calls["Identify"] == 0


def test_no_key_material_in_logs(keyset: KeySet, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    servicer = EchoGateway()
    with bare_server(servicer, RoleInterceptor(KeyRing(keyset.path, check_interval=0))) as ch:
        for case in CASES:
            call(ch, "GetAuditRecord", keyset.metadata(case))
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "call refused" in text
    for key in keyset.plain.values():
        assert key not in text
        # not even the secret part: fg_<key_id>_<secret>, where only the secret may hold "_"
        assert key.split("_", 2)[2] not in text


# ---- live revocation through the key file -----------------------------------------------------


def test_revocation_and_new_keys_take_effect_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    officer, entry = keymod.add_key(path, "officer")
    servicer = EchoGateway()
    ring = KeyRing(path, check_interval=0)
    with bare_server(servicer, RoleInterceptor(ring)) as ch:
        assert call(ch, "Identify", bearer(officer)) == OK
        before = failures("revoked_key")
        keymod.revoke_key(path, entry.key_id)
        assert call(ch, "Identify", bearer(officer)) == UNAUTHENTICATED
        assert failures("revoked_key") == before + 1
        second, _ = keymod.add_key(path, "officer")
        assert call(ch, "Identify", bearer(second)) == OK
        path.unlink()  # a deleted key file locks everyone out (fail closed)
        assert call(ch, "Identify", bearer(second)) == UNAUTHENTICATED
    assert servicer.calls["Identify"] == 2


def test_reload_is_checked_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, entry = keymod.add_key(path, "ops")
    now = [100.0]
    ring = KeyRing(path, check_interval=1.0, clock=lambda: now[0])
    keymod.revoke_key(path, entry.key_id)
    now[0] += 0.5
    assert ring.lookup(key) is not None, "re-read before the interval passed"
    now[0] += 0.6
    assert ring.lookup(key) is None
    assert ring.identify(key).reason == "revoked_key"
    assert ring.identify(key).entry.key_id == entry.key_id


def test_an_unparseable_key_file_keeps_the_last_good_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, _ = keymod.add_key(path, "admin")
    ring = KeyRing(path, check_interval=0)
    path.write_text("{ half a file")
    assert ring.lookup(key) is not None
    keymod.write_key_file(path, [])
    assert ring.lookup(key) is None


# ---- key file ---------------------------------------------------------------------------------


def test_key_file_holds_hashes_only_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.json"
    key, entry = keymod.add_key(path, "kiosk", note="gate 7")
    assert key.startswith(f"fg_{entry.key_id}_") and keymod.key_id_of(key) == entry.key_id
    assert entry.key_id.startswith("kiosk-")
    text = path.read_text()
    assert key not in text and key.rsplit("_", 1)[-1] not in text
    stored = json.loads(text)
    assert stored["version"] == 1
    assert stored["keys"] == [
        {
            "key_id": entry.key_id,
            "role": "kiosk",
            "sha256": keymod.hash_key(key),
            "revoked": False,
            "created": entry.created,
            "note": "gate 7",
        }
    ]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name != "keys.json"], "temp file left behind"


@pytest.mark.parametrize(
    "body, complaint",
    [
        ("not json", "not readable JSON"),
        ("[]", "version"),
        ('{"version": 2, "keys": []}', "version"),
        ('{"version": 1}', '"keys" must be a list'),
        ('{"version": 1, "keys": [1]}', "must be an object"),
        (
            '{"version": 1, "keys": [{"key_id": "a_b", "role": "ops", "sha256": "' + "0" * 64 + '"}]}',
            "key_id",
        ),
        ('{"version": 1, "keys": [{"key_id": "a", "role": "root", "sha256": "' + "0" * 64 + '"}]}', "role"),
        ('{"version": 1, "keys": [{"key_id": "a", "role": "ops", "sha256": "abc"}]}', "sha256"),
        (
            '{"version": 1, "keys": [{"key_id": "a", "role": "ops", "sha256": "'
            + "0" * 64
            + '", "revoked": "no"}]}',
            "revoked",
        ),
        (
            '{"version": 1, "keys": ['
            + ",".join(['{"key_id": "a", "role": "ops", "sha256": "' + "0" * 64 + '"}'] * 2)
            + "]}",
            "appears twice",
        ),
    ],
)
def test_invalid_key_files_are_refused_at_start(tmp_path: Path, body: str, complaint: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(body)
    with pytest.raises(KeyFileError, match=complaint):
        KeyRing(path)


def test_missing_key_file_at_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        KeyRing(tmp_path / "nope.json")


# ---- dev keys for `make run` ------------------------------------------------------------------


def test_generate_dev_keys_creates_then_reuses(tmp_path: Path) -> None:
    key_file, env_file = tmp_path / "var" / "gateway-keys.json", tmp_path / "var" / "dev-keys.env"
    keys = keymod.generate_dev_keys(key_file, env_file)
    names = ["FACEGATE_KIOSK_KEY", "FACEGATE_OFFICER_KEY", "FACEGATE_ADMIN_KEY", "FACEGATE_OPS_KEY"]
    assert sorted(keys) == sorted(names)
    for path in (key_file, env_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert all(key not in key_file.read_text() for key in keys.values())
    assert keymod.read_env_file(env_file) == keys
    ring = KeyRing(key_file)
    for role in ROLES:
        assert ring.lookup(keys[f"FACEGATE_{role.upper()}_KEY"]).role == role

    assert keymod.generate_dev_keys(key_file, env_file) == keys  # second start: same keys


def test_generate_dev_keys_replaces_lost_or_stale_keys(tmp_path: Path) -> None:
    key_file, env_file = tmp_path / "keys.json", tmp_path / "dev-keys.env"
    first = keymod.generate_dev_keys(key_file, env_file)
    extra, _ = keymod.add_key(key_file, "officer", note="added by hand")
    env_file.unlink()
    second = keymod.generate_dev_keys(key_file, env_file)
    assert set(second.values()).isdisjoint(first.values())
    ring = KeyRing(key_file)
    assert all(ring.lookup(k) is None for k in first.values()), "lost dev keys must be revoked"
    assert all(ring.lookup(k) is not None for k in second.values())
    assert ring.lookup(extra) is not None, "keys added by hand survive"

    keymod.revoke_key(key_file, keymod.key_id_of(second["FACEGATE_OPS_KEY"]))
    third = keymod.generate_dev_keys(key_file, env_file)
    assert third != second and KeyRing(key_file).lookup(third["FACEGATE_OPS_KEY"]).role == "ops"


def test_generate_dev_keys_does_not_overwrite_a_broken_key_file(tmp_path: Path) -> None:
    key_file, env_file = tmp_path / "keys.json", tmp_path / "dev-keys.env"
    key_file.write_text("{broken")
    with pytest.raises(KeyFileError):
        keymod.generate_dev_keys(key_file, env_file)
    assert key_file.read_text() == "{broken"


# ---- CLI --------------------------------------------------------------------------------------


def test_cli_add_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    assert keymod.main(["add", "--role", "officer", "--key-file", str(path), "--note", "desk 3"]) == 0
    key = capsys.readouterr().out.strip()
    key_id = keymod.key_id_of(key)
    assert key_id and KeyRing(path).lookup(key).role == "officer"

    assert keymod.main(["list", "--key-file", str(path)]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "active" in listing and key not in listing

    assert keymod.main(["revoke", key_id, "--key-file", str(path)]) == 0
    assert KeyRing(path).lookup(key) is None
    assert keymod.main(["revoke", "officer-ffffffff", "--key-file", str(path)]) == 1
    assert "no key with id" in capsys.readouterr().err
