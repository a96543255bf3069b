"""The ops route: the gateway's system status (health, model, watchlist sizes, decision counts) and
the /metrics links. Rates are computed by the page from two samples of the gateway's counters."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from console.sessions import Session
from console.views import as_json
from console.web import call, guarded


@guarded("ops")
async def status(request: Request, session: Session) -> Response:
    system = await call(session.gateway.system_status)
    out = as_json(system)
    out["metrics_links"] = request.app.state.settings.metrics_links
    return JSONResponse(out)
