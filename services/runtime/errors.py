"""Domain errors and their one mapping to gRPC status codes.

Handlers raise these; the server interceptor turns them into a status and message, so no
handler calls ``context.abort`` itself and every service answers the same way. The classes are
the client layer's (``facegate.errors``): one taxonomy on both sides of the wire, so an error a
service raises reaches an SDK user as the same class.
"""

from __future__ import annotations

import grpc

from facegate.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FacegateError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    rpc_code,
    rpc_details,
)

__all__ = [
    "AlreadyExists",
    "DeadlineExceeded",
    "FacegateError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "status_for",
]


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Map any exception raised by a handler to the status and message sent to the caller.

    Unexpected exceptions become INTERNAL with a generic message: their text may hold data
    (paths, values) that must not leak to a kiosk or into logs.
    """
    if isinstance(exc, FacegateError):
        return exc.code, exc.message
    if isinstance(exc, grpc.RpcError):
        # A downstream call failed: pass UNAVAILABLE / DEADLINE_EXCEEDED through so callers fail closed.
        code = rpc_code(exc)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return code, f"downstream service: {rpc_details(exc)}"
        return grpc.StatusCode.INTERNAL, f"downstream service failed with {code.name}"
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "operation timed out"
    return grpc.StatusCode.INTERNAL, "internal error"
