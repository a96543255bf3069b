"""The console's HTTP application (Starlette) and its server (uvicorn): ``python -m console``."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from console import admin, login, officer, ops
from console.config import ConsoleSettings
from console.sessions import SessionStore
from console.web import STATIC, AccessLog

#: Fields of a log record that are the standard machinery, not the caller's ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    """One JSON object per line, like the services' logs (var/logs/console.log under make run)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name}
        line["message"] = record.getMessage()
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        return json.dumps(line, default=str)


async def healthz(request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def routes() -> list:
    a, o = "/api/watchlists/{watchlist}", "/api/referrals/{decision_id}"
    return [
        Route("/", login.root),
        Route("/healthz", healthz),
        Route("/login", login.login_page),
        Route("/officer", login.role_page("officer", "officer.html")),
        Route("/admin", login.role_page("admin", "admin.html")),
        Route("/ops", login.role_page("ops", "ops.html")),
        Route("/api/login", login.login, methods=["POST"]),
        Route("/api/logout", login.logout, methods=["POST"]),
        Route("/api/me", login.me),
        Route("/api/referrals", officer.referral_list),
        Route("/api/referrals/events", officer.referral_events),
        Route(o, officer.referral_detail),
        Route(o + "/outcome", officer.referral_outcome, methods=["POST"]),
        Route(o + "/confirm-hit", officer.confirm_hit, methods=["POST"]),
        Route("/api/compare", officer.compare, methods=["POST"]),
        Route("/api/identify", officer.identify, methods=["POST"]),
        Route("/api/watchlists", admin.watchlists),
        Route("/api/watchlists", admin.create_watchlist, methods=["POST"]),
        Route(a + "/subjects", admin.subjects),
        Route(a + "/subjects", admin.enrol, methods=["POST"]),
        Route(a + "/subjects/{subject_id}", admin.remove, methods=["DELETE"]),
        Route("/api/photos/check", admin.check_photos, methods=["POST"]),
        Route("/api/status", ops.status),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(settings: ConsoleSettings) -> AccessLog:
    """The console as an ASGI application (sessions in memory, closed when the app stops)."""
    sessions = SessionStore(settings.session_idle_s, settings.session_max_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        sessions.end_all()

    app = Starlette(routes=routes(), lifespan=lifespan)
    app.state.settings, app.state.sessions = settings, sessions
    app.state.gateway_tls = settings.gateway_tls()
    return AccessLog(app)


def main() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    try:
        settings = ConsoleSettings()
        app = create_app(settings)
    except ValidationError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(
            f"invalid configuration:\n  FACEGATE_CONSOLE_GATEWAY_*_FILE: cannot read {exc.filename}",
            file=sys.stderr,
        )
        sys.exit(2)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,  # AccessLog writes its own line, without paths or query strings
        log_config=None,
        timeout_graceful_shutdown=3,
    )
