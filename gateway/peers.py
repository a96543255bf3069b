"""Referrals across gateway replicas: list them from every replica, work each on its own.

Why: a replica audits, and holds the images of, the decisions it made itself (one writer per
hash-chained log), while an officer's console keeps one connection to one replica behind the
Service. Without this, an officer sees only that replica's share of the queue and gets NOT_FOUND
for the others' referrals.

How, with ``FACEGATE_GATEWAY_PEERS`` set:

* ``ListReferrals`` asks every other replica at once and merges their answers with its own (newest
  first). A replica that does not answer within ``FACEGATE_GATEWAY_PEER_TIMEOUT_S`` is named in the
  reply's ``unreachable_peers``: the list says it is incomplete instead of looking complete. One
  that ran out of time is then named without being asked for ``SILENT_HOLD_S``.
* ``GetReferral``, ``RecordReferralOutcome``, ``ConfirmWatchlistHit`` and ``GetAuditRecord`` for a
  decision this replica does not hold are forwarded to the replica that does, which applies its
  own rules (close once, two officers), writes the audit record in its own chain and returns the
  images it holds. No peer holds it: NOT_FOUND; some peers did not answer: UNAVAILABLE, since the
  referral may be on one of them.

A forwarded call carries the officer's own ``authorization`` header, so the owner checks the
officer's role and audits the officer's key id, exactly as for a direct call; it is marked with
``x-facegate-peer`` so that it is answered locally and never forwarded again. Peers are dialled on
their peer port (``FACEGATE_GATEWAY_PEER_PORT``) with the internal transport (mTLS from
``FACEGATE_MTLS_*``). A name in ``FACEGATE_GATEWAY_PEERS`` is resolved on every use, so replicas an
autoscaler adds are asked as soon as their address is in DNS; this replica's own address is skipped,
and the channel to a replica whose address has not resolved for ``FORGET_AFTER_S`` is closed.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import grpc

from facegate.client import open_channel
from facegate.errors import NotFound, Unavailable, from_rpc_error
from facegate.v1 import gateway_pb2, gateway_pb2_grpc
from gateway.metrics import PEER_UNANSWERED

#: Metadata that marks a call one replica makes on another's behalf (answered locally, never forwarded).
PEER_HEADER = "x-facegate-peer"
#: Codes that mean "this peer could not say"; any other failure is the owner's answer.
UNREACHABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
#: A peer whose list call ran out of time is listed as unreachable without being asked for this
#: long: one stuck replica would otherwise hold every queue refresh for the whole peer timeout.
SILENT_HOLD_S = 30.0
#: A replica whose address has not resolved for this long is forgotten (its channel closed, its hold
#: dropped): under an autoscaler pods come and go, and each gone pod's channel would otherwise stay
#: open, and keep reconnecting, for the life of this replica.
FORGET_AFTER_S = 300.0

Resolve = Callable[[str, int], Iterable[str]]


def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (all replicas behind a headless Service)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def own_addresses() -> frozenset[str]:
    """Addresses that are this host: loopback and what its host name resolves to (a pod's IP)."""
    found = {"127.0.0.1", "::1"}
    with contextlib.suppress(OSError):
        found.update(resolve_addresses(socket.gethostname(), 0))
    return frozenset(found)


def parse_targets(spec: str) -> list[tuple[str, int]]:
    """``host:port[,host:port...]`` as (host, port) pairs; ValueError names a malformed entry."""
    out = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ValueError(f"peer {entry!r} is not host:port")
        out.append((host.strip("[]"), int(port)))
    return out


def is_forwarded(context: grpc.ServicerContext) -> bool:
    return any(key == PEER_HEADER for key, _ in context.invocation_metadata() or ())


def forwarded_metadata(context: grpc.ServicerContext) -> list[tuple[str, str]]:
    """The caller's own credentials, and the mark that keeps the peer from forwarding again."""
    auth = [(k, v) for k, v in context.invocation_metadata() or () if k == "authorization"]
    return [*auth, (PEER_HEADER, "1")]


class Peers:
    """The other gateway replicas, and the two ways an officer's call reaches them."""

    def __init__(
        self,
        spec: str,
        *,
        own_port: int,
        timeout_s: float,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str = "",
        resolve: Resolve = resolve_addresses,
        own: frozenset[str] | None = None,
        forget_after_s: float = FORGET_AFTER_S,
    ) -> None:
        self.targets_spec = parse_targets(spec)
        self.own_port, self.timeout_s = own_port, timeout_s
        self.credentials, self.server_name, self.resolve = credentials, server_name, resolve
        self.own = own_addresses() if own is None else own
        self.forget_after_s = forget_after_s
        self._channels: dict[str, grpc.Channel] = {}
        self._last_seen: dict[str, float] = {}  # target -> monotonic time it last resolved
        self._silent_until: dict[str, float] = {}  # target -> monotonic time its list calls resume
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gateway-peers")

    def targets(self) -> list[str]:
        """host:port of every other replica now (a name that does not resolve counts as one target,
        which then fails as unreachable instead of silently dropping out of the list)."""
        out: list[str] = []
        for host, port in self.targets_spec:
            try:
                addresses = list(self.resolve(host, port))
            except OSError:
                addresses = [host]
            for address in addresses:
                if address in self.own and port == self.own_port:
                    continue  # this replica
                target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
                if target not in out:
                    out.append(target)
        self._forget_gone(out)
        return out

    def dialled(self) -> list[str]:
        """The targets this replica holds a channel to now."""
        with self._lock:
            return sorted(self._channels)

    def list_referrals(
        self, request: gateway_pb2.ListReferralsRequest, metadata: Sequence[tuple[str, str]]
    ) -> tuple[list[gateway_pb2.AuditRecord], list[str]]:
        """Every peer's answer to ``request`` at once: (their referrals, peers that did not answer).

        A peer that ran out of time is not asked again for ``SILENT_HOLD_S`` (it stays listed as
        unreachable), so the queue keeps refreshing at its own pace while a replica is stuck."""
        now = time.monotonic()
        with self._lock:
            held = {t for t, until in self._silent_until.items() if until > now}
        targets = [t for t in self.targets() if t not in held]
        calls = [self._submit(t, "ListReferrals", request, metadata) for t in targets]
        records: list[gateway_pb2.AuditRecord] = []
        unreachable = sorted(held)
        PEER_UNANSWERED.inc(len(held))
        for target, call in zip(targets, calls, strict=True):
            try:
                records.extend(call.result().referrals)
            except grpc.RpcError as exc:
                unreachable.append(target)  # whatever the reason, its share of the queue is missing
                PEER_UNANSWERED.inc()
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    with self._lock:
                        self._silent_until[target] = time.monotonic() + SILENT_HOLD_S
        return records, unreachable

    def forward(self, method: str, request: Any, metadata: Sequence[tuple[str, str]]) -> Any:
        """The answer of the replica that holds the decision ``request`` names.

        NOT_FOUND when no replica holds it; UNAVAILABLE when none that answered does but some did
        not answer; the owner's own error (FAILED_PRECONDITION, ...) as it gave it."""
        targets = self.targets()
        calls = {self._submit(t, method, request, metadata): t for t in targets}
        unreachable = []
        for call in as_completed(calls):  # the owner's answer, without waiting for a silent peer
            target = calls[call]
            try:
                return call.result()
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    continue
                if exc.code() in UNREACHABLE:
                    unreachable.append(target)
                    PEER_UNANSWERED.inc()
                    continue
                raise from_rpc_error(exc) from None
        if unreachable:
            raise Unavailable(
                f"not on this gateway or on the {len(targets) - len(unreachable)} peer(s) that answered; "
                f"{len(unreachable)} peer(s) did not answer ({', '.join(unreachable)}): retry shortly"
            )
        raise NotFound(f"no gateway replica holds decision {getattr(request, 'decision_id', '')[:64]}")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    def _submit(self, target: str, method: str, request: Any, metadata: Sequence[tuple[str, str]]) -> Any:
        """The call on the pool, in a copy of this call's context (its request id and deadline)."""
        return self._pool.submit(
            contextvars.copy_context().run, self._call, target, method, request, metadata
        )

    def _call(self, target: str, method: str, request: Any, metadata: Sequence[tuple[str, str]]) -> Any:
        stub = gateway_pb2_grpc.GatewayServiceStub(self._channel(target))
        return getattr(stub, method)(request, metadata=list(metadata), timeout=self.timeout_s)

    def _forget_gone(self, current: Sequence[str]) -> None:
        """Mark ``current`` as seen now; close what has not been seen for ``forget_after_s``."""
        now = time.monotonic()
        with self._lock:
            self._last_seen.update(dict.fromkeys(current, now))
            gone = [t for t, seen in self._last_seen.items() if now - seen > self.forget_after_s]
            closing = []
            for target in gone:
                del self._last_seen[target]
                self._silent_until.pop(target, None)
                if (channel := self._channels.pop(target, None)) is not None:
                    closing.append(channel)
        for channel in closing:
            channel.close()

    def _channel(self, target: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(target)
            if channel is None:
                options = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
                channel = open_channel(target, credentials=self.credentials, extra_options=options)
                self._channels[target] = channel
            return channel
