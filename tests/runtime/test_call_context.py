"""The call context across hops, for every RPC kind, on real loopback servers.

A small servicer registers the four RPC kinds (unary/stream request x unary/stream response) as
raw-bytes generic handlers, so the runtime's interceptor is exercised on streaming calls before any
streaming RPC exists in the contract. A second server forwards each call to the first through the
client layer's channel, to show the request id and the deadline crossing a hop.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest

from facegate.client import open_channel
from facegate.context import call_context, current_request_id, remaining_s
from services.runtime.errors import InvalidArgument
from tests.support import serve

SERVICE = "test.Echo"
#: gRPC sends timeouts with limited precision and each side reads its own clock: allow this much.
SLOP_S = 0.05


def _info(note: str = "") -> bytes:
    """What the serving side saw: its request id and the time the caller left it."""
    left = remaining_s()
    return json.dumps({"rid": current_request_id(), "remaining": left, "note": note}).encode()


class EchoKinds:
    """Unary and streaming handlers that report the call context; b"fail" raises a domain error."""

    service_names = (SERVICE,)

    def register(self, server: grpc.Server) -> None:
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream),
            "BidiStream": grpc.stream_stream_rpc_method_handler(self.bidi_stream),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass

    @staticmethod
    def _check(request: bytes) -> None:
        if request == b"fail":
            raise InvalidArgument("the request said fail")

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._check(request)
        if request == b"slow":
            time.sleep(0.3)
        return _info()

    def server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield _info("first")
        self._check(request)  # fails after one message has gone out
        yield _info("second")

    def client_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        for request in requests:
            self._check(request)
        return _info()

    def bidi_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            self._check(request)
            yield _info()


class Forwarder(EchoKinds):
    """Answers Unary by calling Unary on the echo server through the client layer."""

    def __init__(self, target: str) -> None:
        self.channel = open_channel(target, budget_s=30)

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        here = json.loads(_info())  # before the hop, so "downstream" must see less time left
        downstream = json.loads(self.channel.unary_unary(f"/{SERVICE}/Unary")(request))
        return json.dumps({"here": here, "downstream": downstream}).encode()


@pytest.fixture(scope="module")
def echo():
    with serve(EchoKinds(), label="echo") as running:
        yield running


def call(
    channel: grpc.Channel, kind: str, payload: bytes = b"ok", timeout: float | None = None
) -> list[dict]:
    method = f"/{SERVICE}/{kind}"
    if kind == "Unary":
        return [json.loads(channel.unary_unary(method)(payload, timeout=timeout))]
    if kind == "ServerStream":
        return [json.loads(m) for m in channel.unary_stream(method)(payload, timeout=timeout)]
    if kind == "ClientStream":
        return [json.loads(channel.stream_unary(method)(iter([b"ok", payload]), timeout=timeout))]
    return [json.loads(m) for m in channel.stream_stream(method)(iter([b"ok", payload]), timeout=timeout)]


KINDS = ("Unary", "ServerStream", "ClientStream", "BidiStream")


@pytest.mark.parametrize("kind", KINDS)
def test_every_rpc_kind_gets_the_callers_request_id_and_deadline(echo, kind: str) -> None:
    with open_channel(f"127.0.0.1:{echo.port}") as ch, call_context(request_id=f"gate-3-{kind}", timeout_s=5):
        seen = call(ch, kind)
    assert seen and all(s["rid"] == f"gate-3-{kind}" for s in seen)
    assert all(0 < s["remaining"] <= 5 + SLOP_S for s in seen)


@pytest.mark.parametrize("kind", KINDS)
def test_every_rpc_kind_is_counted_logged_and_error_mapped(echo, kind: str, caplog) -> None:
    with (
        caplog.at_level(logging.INFO, logger="facegate.server"),
        open_channel(f"127.0.0.1:{echo.port}") as ch,
        pytest.raises(grpc.RpcError) as err,
    ):
        call(ch, kind, b"fail", timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "the request said fail"
    body = urllib.request.urlopen(f"http://127.0.0.1:{echo.metrics_port}/metrics", timeout=5).read().decode()
    assert f'facegate_rpc_requests_total{{code="INVALID_ARGUMENT",method="{kind}",service="echo"}}' in body
    assert f'facegate_rpc_in_flight{{method="{kind}",service="echo"}} 0.0' in body
    logged = [r for r in caplog.records if getattr(r, "method", None) == kind]
    assert logged and logged[-1].code == "INVALID_ARGUMENT"


def test_the_request_id_and_deadline_cross_a_hop(echo) -> None:
    forwarder = Forwarder(f"127.0.0.1:{echo.port}")
    with serve(forwarder, label="forwarder") as front, open_channel(f"127.0.0.1:{front.port}") as ch:
        reply = json.loads(
            ch.unary_unary(f"/{SERVICE}/Unary")(b"ok", metadata=(("x-request-id", "kiosk-42"),), timeout=3)
        )
    forwarder.channel.close()
    assert reply["here"]["rid"] == reply["downstream"]["rid"] == "kiosk-42"
    # The downstream call got no more than what the caller had left, not the channel's 30 s budget.
    assert 0 < reply["downstream"]["remaining"] <= reply["here"]["remaining"] + SLOP_S <= 3 + 2 * SLOP_S


def test_a_channel_budget_caps_each_call_and_a_spent_deadline_fails_at_once(echo) -> None:
    with open_channel(f"127.0.0.1:{echo.port}", budget_s=0.5) as ch:
        assert 0 < call(ch, "Unary")[0]["remaining"] <= 0.5 + SLOP_S
        with call_context(timeout_s=0.0), pytest.raises(grpc.RpcError) as err:
            started = time.monotonic()
            call(ch, "Unary", b"slow")
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 0.5
