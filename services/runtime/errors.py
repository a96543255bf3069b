"""Domain errors and their one mapping to gRPC status codes.

Handlers raise these; the server interceptor turns them into a status and message, so no
handler calls ``context.abort`` itself and every service answers the same way.
"""

from __future__ import annotations

import grpc


class FacegateError(Exception):
    """Base class: an error the caller can act on. The message is safe to return and log."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(FacegateError):
    """The request is wrong and retrying it unchanged will fail again."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ResourceExhausted(FacegateError):
    """The request is over a size, pixel, batch or rate limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(FacegateError):
    """The system is not in a state to do this (e.g. model version mismatch)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class NotFound(FacegateError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(FacegateError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Unavailable(FacegateError):
    """A dependency is down; the caller may retry (and a decision must fail closed)."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(FacegateError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class PermissionDenied(FacegateError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(FacegateError):
    code = grpc.StatusCode.UNAUTHENTICATED


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Map any exception raised by a handler to the status and message sent to the caller.

    Unexpected exceptions become INTERNAL with a generic message: their text may hold data
    (paths, values) that must not leak to a kiosk or into logs.
    """
    if isinstance(exc, FacegateError):
        return exc.code, exc.message
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        # A downstream call failed: pass UNAVAILABLE / DEADLINE_EXCEEDED through so callers fail closed.
        code = exc.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return code, f"downstream service: {exc.details()}"
        return grpc.StatusCode.INTERNAL, f"downstream service failed with {code.name}"
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "operation timed out"
    return grpc.StatusCode.INTERNAL, "internal error"
