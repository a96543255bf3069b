"""Log in with a role key, log out, who am I; the role's pages.

The key is checked by the gateway itself (WhoAmI): an unknown or revoked key is refused there, and
the role the console shows is the one the gateway reports. Kiosk keys are refused: the console is
for people (officer, admin, ops). Login is state-changing as well, so it needs the pre-login CSRF
token that came with the login page (a cookie and the page's copy must match).
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from console.sessions import Session
from console.web import (
    CSRF_HEADER,
    HOME,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    call,
    guarded,
    page_file,
    problem,
    same_origin,
)
from facegate.errors import FacegateError
from facegate.gateway_client import Gateway

MAX_KEY_CHARS = 512


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int | None) -> None:
    settings = request.app.state.settings
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
        path="/",
    )


async def login_page(request: Request) -> Response:
    session = request.app.state.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        return RedirectResponse(HOME[session.role], status_code=303)
    token = secrets.token_urlsafe(32)
    response = page_file("login.html", csrf=token)
    _cookie(response, request, LOGIN_COOKIE, token, max_age=3600)
    return response


async def root(request: Request) -> Response:
    session = request.app.state.sessions.get(request.cookies.get(SESSION_COOKIE))
    return RedirectResponse(HOME[session.role] if session else "/login", status_code=303)


def _login_csrf_ok(request: Request) -> bool:
    cookie, header = request.cookies.get(LOGIN_COOKIE), request.headers.get(CSRF_HEADER)
    return bool(cookie and header) and same_origin(request) and hmac.compare_digest(cookie, header)


async def login(request: Request) -> Response:
    if not _login_csrf_ok(request):
        return problem(403, "CSRF", "missing or wrong CSRF token; reload the login page")
    try:
        body = await request.json()
    except ValueError:
        return problem(400, "INVALID_ARGUMENT", 'send JSON {"key": "..."}')
    key = body.get("key") if isinstance(body, dict) else None
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_CHARS:
        return problem(400, "INVALID_ARGUMENT", "an API key is required")
    settings = request.app.state.settings
    gateway = Gateway(
        settings.gateway_target,
        key=key.strip(),
        timeout=settings.gateway_timeout_s,
        **request.app.state.gateway_tls,
    )
    try:
        me = await call(gateway.whoami)
    except FacegateError as exc:
        gateway.close()
        status = 401 if exc.code.name == "UNAUTHENTICATED" else 503
        return problem(status, exc.code.name, exc.message)
    if me.role not in HOME:
        gateway.close()
        return problem(403, "PERMISSION_DENIED", f"a {me.role} key cannot use the console")
    session = request.app.state.sessions.create(me.key_id, me.role, gateway)
    response = JSONResponse(_me(session))
    _cookie(response, request, SESSION_COOKIE, session.session_id, max_age=settings.session_max_s)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


def _me(session: Session) -> dict[str, str]:
    return {"key_id": session.key_id, "role": session.role, "csrf": session.csrf, "home": HOME[session.role]}


@guarded(None)
async def me(request: Request, session: Session) -> Response:
    return JSONResponse(_me(session))


@guarded(None)
async def logout(request: Request, session: Session) -> Response:
    request.app.state.sessions.end(session)
    response = JSONResponse({"logged_out": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def role_page(role: str, name: str):
    @guarded(role, page=True)
    async def page(request: Request, session: Session) -> Response:
        return page_file(name)

    page.__name__ = f"{role}_page"
    return page
