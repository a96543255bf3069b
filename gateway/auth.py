"""Role check for every gateway call, before any handler runs.

One ``grpc.ServerInterceptor`` (:class:`RoleInterceptor`) reads the ``authorization: Bearer <key>``
metadata, finds the key in a :class:`gateway.keys.KeyRing` and checks the key's role against
:data:`METHOD_ROLES`:

* no header, several, or not ``Bearer <key>`` → UNAUTHENTICATED, reason ``missing_key``;
* a key that is not in the ring → UNAUTHENTICATED, ``unknown_key``; a revoked one → UNAUTHENTICATED,
  ``revoked_key`` (the caller is told the same "invalid API key" for both, so a revoked key's holder
  learns nothing more than a guesser);
* a valid key whose role is not listed for the method → PERMISSION_DENIED, ``wrong_role``. A gateway
  method missing from the table is refused for every role (fail closed: a new RPC is closed until
  someone decides who may call it);
* ``/grpc.*`` (health, reflection) passes without a key: load balancers and grpcurl need them.

Each refusal is counted in ``facegate_gateway_auth_failures_total{reason}``, logged with the key id
(never the key) and reported to ``on_refusal(method, reason, key_id, role)`` so it can be audited.

The check runs inside the handler the interceptor returns, not in ``intercept_service`` itself:
gRPC calls ``intercept_service`` on its single dispatch thread, and a key-file reload or an audit
write there would stall every call. The wrapped handler is of the same kind as the original (any
of the four unary/stream combinations), checks first, and on refusal aborts with the status before
the real handler is called. Behind the runtime's interceptor (``services/runtime/server.py``, which
runs first) the abort is counted, logged and passed through like any other status; on its own the
abort is the status, so the interceptor is testable without the runtime.

An admitted call runs in a copy of the caller's ``contextvars`` context in which
:func:`current_caller` returns the caller's key id and role. Each step of a streamed response runs
in that same context, so a streaming handler sees its caller on every ``next()``, and nothing leaks
into the pool thread's context once the call ends.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import grpc

from gateway.auth_metrics import AUTH_FAILURES
from gateway.keys import Lookup
from services.runtime.errors import FacegateError, PermissionDenied, Unauthenticated

log = logging.getLogger("facegate.gateway.auth")

GATEWAY_SERVICE = "facegate.v1.GatewayService"

_OFFICER = frozenset({"officer"})
_ADMIN = frozenset({"admin"})

#: Which roles may call each GatewayService method. A method not listed is refused for everyone.
METHOD_ROLES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "VerifyTraveller": frozenset({"kiosk"}),
        "VerifyTravellerStream": frozenset({"kiosk"}),  # the same decision from the camera's stream
        "Identify": _OFFICER,
        "Compare": _OFFICER,
        "Detect": _OFFICER,
        "ListReferrals": _OFFICER,  # recent REFER decisions for the officer console
        "GetReferral": _OFFICER,  # one referral with its held images
        "RecordReferralOutcome": _OFFICER,  # admitted / refused / escalated, audited
        "ConfirmWatchlistHit": _OFFICER,  # the two-officer rule: a second, different key confirms
        "WhoAmI": frozenset({"kiosk", "officer", "admin", "ops"}),  # a console's log-in
        "GetSystemStatus": frozenset({"ops"}),  # the ops overview
        "CheckEnrolmentPhotos": _ADMIN,  # quality feedback before enrolling
        "EnrollFromPhotos": _ADMIN,
        "RemoveSubject": _ADMIN,
        "GetSubject": _ADMIN,
        "ListSubjects": _ADMIN,
        "CreateWatchlist": _ADMIN,
        "ListWatchlists": _ADMIN,
        "DeleteWatchlist": _ADMIN,
        "GetAuditRecord": frozenset({"officer", "ops"}),
    }
)

#: ``on_refusal(method, reason, key_id, role)``: method is the full gRPC path
#: ("/facegate.v1.GatewayService/Identify"); key_id and role are None when no key was recognised.
RefusalHook = Callable[[str, str, str | None, str | None], None]


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key id (never the key) and its role."""

    key_id: str
    role: str


_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "facegate_gateway_caller", default=None
)


def current_caller() -> Caller | None:
    """The caller of the RPC being handled; None outside an admitted gateway call."""
    return _CALLER.get()


class KeyIdentifier(Protocol):
    """What the interceptor needs from a key store (``gateway.keys.KeyRing``)."""

    def identify(self, presented_key: str) -> Lookup: ...


@dataclass(frozen=True)
class Refusal:
    """Why a call is refused, and the domain error whose code and message the caller gets."""

    reason: str  # a label of facegate_gateway_auth_failures_total
    error: FacegateError
    key_id: str | None = None
    role: str | None = None


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The key in exactly one ``authorization: Bearer <key>`` entry, else None (missing or malformed)."""
    values = [value for name, value in metadata or () if name.lower() == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return None
    return token


class RoleInterceptor(grpc.ServerInterceptor):
    """Admit a call only for a valid key whose role may call the method; see the module docstring."""

    def __init__(
        self,
        keys: KeyIdentifier,
        *,
        method_roles: Mapping[str, frozenset[str]] = METHOD_ROLES,
        service: str = GATEWAY_SERVICE,
        on_refusal: RefusalHook | None = None,
    ) -> None:
        self.keys = keys
        self.method_roles = method_roles
        self.prefix = f"/{service}/"
        self.on_refusal = on_refusal

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or details.method.startswith("/grpc."):
            return handler  # unknown method: gRPC answers UNIMPLEMENTED; health/reflection: open
        method = details.method
        return _guarded(handler, lambda context: self._admit(method, context))

    def authorize(self, method: str, metadata: Sequence[tuple[str, Any]] | None) -> Caller | Refusal:
        """The caller of ``method`` given the call's metadata, or why the call is refused."""
        key = bearer_token(metadata)
        if key is None:
            message = "missing or malformed 'authorization: Bearer <key>' metadata"
            return Refusal("missing_key", Unauthenticated(message))
        found = self.keys.identify(key)
        entry = found.entry
        if not found.ok or entry is None:
            key_id, role = (entry.key_id, entry.role) if entry else (None, None)
            reason = found.reason if found.reason != "ok" else "unknown_key"
            return Refusal(reason, Unauthenticated("invalid API key"), key_id, role)
        name = method[len(self.prefix) :] if method.startswith(self.prefix) else None
        allowed = self.method_roles.get(name) if name else None
        if not allowed or entry.role not in allowed:
            rpc = method.rsplit("/", 1)[-1]
            message = f"role {entry.role} may not call {rpc}"
            return Refusal("wrong_role", PermissionDenied(message), entry.key_id, entry.role)
        return Caller(entry.key_id, entry.role)

    def _admit(self, method: str, context: grpc.ServicerContext) -> contextvars.Context:
        """The context to run the handler in; aborts the call (raises) when it is refused."""
        verdict = self.authorize(method, context.invocation_metadata())
        if isinstance(verdict, Refusal):
            self._record(method, verdict)
            context.abort(verdict.error.code, verdict.error.message)
        ctx = contextvars.copy_context()
        ctx.run(_CALLER.set, verdict)
        return ctx

    def _record(self, method: str, refusal: Refusal) -> None:
        """Count, log and report a refusal; a failing hook must not turn a refusal into an admission."""
        AUTH_FAILURES.labels(refusal.reason).inc()
        log.warning(
            "call refused",
            extra={
                "method": method,
                "reason": refusal.reason,
                "key_id": refusal.key_id,
                "role": refusal.role,
            },
        )
        if self.on_refusal is None:
            return
        try:
            self.on_refusal(method, refusal.reason, refusal.key_id, refusal.role)
        except Exception as exc:
            log.error("refusal hook failed", exc_info=exc, extra={"method": method})


# ---- wrapping handlers of every kind ----------------------------------------------------------

_HANDLER_KINDS: dict[str, Callable[..., grpc.RpcMethodHandler]] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}

Admit = Callable[[grpc.ServicerContext], contextvars.Context]


def _guarded(handler: grpc.RpcMethodHandler, admit: Admit) -> grpc.RpcMethodHandler:
    """A handler of the same kind that calls ``admit`` first and runs the original in its context."""
    kind = next(k for k in _HANDLER_KINDS if getattr(handler, k) is not None)
    inner = getattr(handler, kind)

    if handler.response_streaming:

        def behaviour(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            ctx = admit(context)
            return _steps_in(ctx, ctx.run(inner, request_or_iterator, context))

    else:

        def behaviour(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            ctx = admit(context)
            return ctx.run(inner, request_or_iterator, context)

    return _HANDLER_KINDS[kind](
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _steps_in(ctx: contextvars.Context, responses: Iterator[Any]) -> Iterator[Any]:
    """Yield ``responses``, running each step (and the final close) of the handler inside ``ctx``."""
    try:
        while True:
            try:
                item = ctx.run(next, responses)
            except StopIteration:
                return
            yield item
    finally:
        close = getattr(responses, "close", None)
        if close is not None:
            ctx.run(close)
