"""One error taxonomy for facegate, on both sides of the wire.

Every error carries a gRPC status code and a message that is safe to show and log. Servers raise
them and the runtime's interceptor turns them into that status (``services.runtime.errors``
re-exports these classes); clients get them back from :func:`from_rpc_error`, so an SDK user
catches ``facegate.errors.InvalidArgument`` instead of inspecting a raw ``grpc.RpcError``.

The face pipeline adds the errors that a *caller* of the services needs to tell apart:

* :class:`ServiceFailure` - a service the answer depends on did not give one (down, slow, broken).
  A decision that depends on it must fail closed.
* :class:`FaceRejected` - the image was read, but its face cannot be used (none, several, poor
  quality); ``reason`` says which, so a kiosk can tell the traveller what to fix.
* :class:`ModelVersionChanged` - the embedding service now runs other weights than the caller
  pinned; crops and thresholds must be fetched again.
"""

from __future__ import annotations

import grpc


class FacegateError(Exception):
    """Base class: an error with a gRPC status code and a message that is safe to return and log."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    #: The service that raised it, when a client call failed ("detection", "embedding", ...).
    service: str = ""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidArgument(FacegateError, ValueError):
    """The request is wrong and retrying it unchanged will fail again (also a ValueError)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ResourceExhausted(FacegateError):
    """The request is over a size, pixel, batch or rate limit, or the server is saturated."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(FacegateError):
    """The system is not in a state to do this (e.g. model version mismatch, no calibration)."""

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


class Unimplemented(FacegateError):
    code = grpc.StatusCode.UNIMPLEMENTED


class ServiceFailure(Unavailable):
    """A downstream service gave no usable answer (unreachable, timed out, internal error).

    ``upstream_code`` keeps the status the service (or the channel) reported.
    """

    def __init__(self, message: str, upstream_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        super().__init__(message)
        self.upstream_code = upstream_code


class ModelVersionChanged(FailedPrecondition):
    """Embed refused the pinned model version: the embedding service now runs other weights."""


class FaceRejected(InvalidArgument):
    """The image holds no usable face for this purpose; ``reason`` names why.

    Reasons: ``no_face``, ``several_faces``, ``low_quality``.
    """

    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    LOW_QUALITY = "low_quality"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_BY_CODE: dict[grpc.StatusCode, type[FacegateError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        ResourceExhausted,
        FailedPrecondition,
        NotFound,
        AlreadyExists,
        Unavailable,
        DeadlineExceeded,
        PermissionDenied,
        Unauthenticated,
        Unimplemented,
    )
}

#: Codes that mean "the service refused this input": the caller's data, not the system, is at fault.
INPUT_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED})


def rpc_code(exc: grpc.RpcError) -> grpc.StatusCode:
    code = exc.code() if hasattr(exc, "code") else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def rpc_details(exc: grpc.RpcError) -> str:
    return (exc.details() if hasattr(exc, "details") else "") or ""


def from_rpc_error(exc: grpc.RpcError, service: str = "") -> FacegateError:
    """The facegate error for a failed call, keeping its status code and message."""
    code = rpc_code(exc)
    details = rpc_details(exc)
    message = f"{service} service: {details}" if service else details
    cls = _BY_CODE.get(code, FacegateError)
    error = cls(message, code) if cls is FacegateError else cls(message)
    error.service = service
    return error
