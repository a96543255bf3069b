"""What every console route shares: the session and role check, CSRF, error mapping, safe headers.

Every route is declared with :func:`guarded`, which is the only way a handler gets a session:

* no session (or an expired one) → a page redirects to /login, an API call answers 401;
* a session of another role → 403 (the console shows only what the role may do; the gateway checks
  the same role again on every call, so a console bug cannot widen anyone's rights);
* a state-changing request (anything but GET/HEAD) must carry the session's CSRF token in the
  ``X-CSRF-Token`` header and, when the browser sends an Origin, come from this origin → else 403.
  The session cookie is also HttpOnly and SameSite=Strict, so another site's page cannot use it.

Gateway errors keep their meaning as HTTP statuses (INVALID_ARGUMENT 400, PERMISSION_DENIED 403,
NOT_FOUND 404, FAILED_PRECONDITION 409, RESOURCE_EXHAUSTED 429, a service down 503); an
UNAUTHENTICATED answer (the key was revoked) ends the session.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from console.sessions import Session
from facegate.errors import FacegateError, InvalidArgument

log = logging.getLogger("facegate.console")

STATIC = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "fg_session"
LOGIN_COOKIE = "fg_login"  # the pre-login CSRF token (login is state-changing too)
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD")
HOME = {"officer": "/officer", "admin": "/admin", "ops": "/ops"}

#: Headers on every answer: no caching of people's data, no framing, scripts and images from here only.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}

HTTP_OF_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

Handler = Callable[[Request, Session], Awaitable[Response]]


def problem(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def too_large(request: Request) -> bool:
    """A body announced larger than the upload limit is refused before any of it is read."""
    try:
        length = int(request.headers.get("content-length", "0"))
    except ValueError:
        return True
    return length > request.app.state.settings.max_upload_bytes


def forbidden_page(message: str, home: str) -> Response:
    return page_file("forbidden.html", message=message, home=home, status_code=403)


def same_origin(request: Request) -> bool:
    """False only when the browser says the request comes from another origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def guarded(
    role: str | None, *, page: bool = False
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A route for ``role`` (None: any logged-in user); see the module docstring."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            sessions = request.app.state.sessions
            session = sessions.get(request.cookies.get(SESSION_COOKIE))
            if session is None:
                if page:
                    return RedirectResponse("/login", status_code=303)
                return problem(401, "UNAUTHENTICATED", "log in first")
            if role is not None and session.role != role:
                message = f"this needs the {role} role; you are {session.role}"
                if page:
                    return forbidden_page(message, HOME[session.role])
                return problem(403, "PERMISSION_DENIED", message)
            if request.method not in SAFE_METHODS and not (
                same_origin(request) and session.csrf_matches(request.headers.get(CSRF_HEADER))
            ):
                return problem(403, "CSRF", "missing or wrong CSRF token; reload the page")
            if too_large(request):
                return problem(
                    413, "RESOURCE_EXHAUSTED", "the request is over FACEGATE_CONSOLE_MAX_UPLOAD_BYTES"
                )
            try:
                return await handler(request, session)
            except FacegateError as exc:
                if exc.code == grpc.StatusCode.UNAUTHENTICATED:
                    sessions.end(session)  # the key was revoked or the gateway no longer knows it
                return problem(HTTP_OF_CODE.get(exc.code, 502), exc.code.name, exc.message)

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap


async def json_body(request: Request) -> dict:
    """The request's JSON object, or INVALID_ARGUMENT."""
    try:
        body = await request.json()
    except ValueError:
        raise InvalidArgument("the body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object")
    return body


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A blocking gateway call, off the event loop."""
    return await run_in_threadpool(partial(fn, *args, **kwargs))


def page_file(name: str, status_code: int = 200, **values: str) -> Response:
    """A static HTML page, with ``{{name}}`` placeholders filled (tokens and fixed texts, never user input)."""
    text = (STATIC / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value))
    return Response(text, status_code=status_code, media_type="text/html; charset=utf-8")


class AccessLog:
    """ASGI middleware: security headers on every answer, and one log line per request that names
    the method, the route's handler and the status, never a path, query, cookie, key or body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [0]

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": getattr(scope.get("endpoint"), "__name__", "(unmatched)"),
                    "status": status[0],
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
