"""The officer's routes: the live referral queue, one referral with its images, the outcome, the
two-officer hit confirmation, compare and identify. Each is one gateway call with the officer's key.

The queue is pushed to the browser as server-sent events: one stream per open page, which asks the
gateway for the open referrals every ``FACEGATE_CONSOLE_POLL_INTERVAL_S`` and sends the list when it
changed (and a comment line now and then so proxies keep the connection open).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import anyio
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from console.sessions import Session
from console.views import as_json, referral_row
from console.web import call, guarded, json_body, problem
from facegate.errors import FacegateError, InvalidArgument
from facegate.gateway_client import REFERRAL_OUTCOMES

QUEUE_LIMIT = 100
KEEPALIVE_S = 15.0
MAX_TOP_K = 100


async def upload(form, name: str, limit: int) -> bytes:
    """The bytes of one uploaded file field, or INVALID_ARGUMENT naming the field."""
    item = form.get(name)
    if not isinstance(item, UploadFile):
        raise InvalidArgument(f"{name}: a photo is required")
    data = await item.read(limit + 1)
    if len(data) > limit:
        raise InvalidArgument(f"{name}: the photo is over {limit} bytes")
    return data


async def open_referrals(session: Session) -> dict:
    """The open queue, and the gateway replicas whose referrals are missing from it (if any)."""
    records = await call(session.gateway.referrals, limit=QUEUE_LIMIT, open_only=True)
    return {"referrals": [referral_row(r) for r in records], "unreachable": records.unreachable_peers}


@guarded("officer")
async def referral_list(request: Request, session: Session) -> Response:
    return JSONResponse(await open_referrals(session))


@guarded("officer")
async def referral_events(request: Request, session: Session) -> Response:
    sessions, poll_s = request.app.state.sessions, request.app.state.settings.poll_interval_s

    async def stream() -> AsyncIterator[str]:
        last, quiet_since = None, time.monotonic()
        while sessions.alive(session) and not await request.is_disconnected():
            try:
                payload = json.dumps(await open_referrals(session))
                event = "referrals"
            except FacegateError as exc:
                payload, event = json.dumps({"error": exc.code.name, "message": exc.message}), "problem"
            if payload != last:
                last, quiet_since = payload, time.monotonic()
                yield f"event: {event}\ndata: {payload}\n\n"
            elif time.monotonic() - quiet_since > KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            sessions.get(session.session_id)  # an open queue counts as use of the session
            await anyio.sleep(poll_s)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})


@guarded("officer")
async def referral_detail(request: Request, session: Session) -> Response:
    referral = await call(session.gateway.referral, request.path_params["decision_id"])
    return JSONResponse(as_json(referral))


@guarded("officer")
async def referral_outcome(request: Request, session: Session) -> Response:
    body = await json_body(request)
    outcome = body.get("outcome")
    if outcome not in REFERRAL_OUTCOMES:
        return problem(400, "INVALID_ARGUMENT", "outcome: one of admitted, refused, escalated")
    referral = await call(
        session.gateway.record_referral_outcome, request.path_params["decision_id"], outcome
    )
    return JSONResponse(as_json(referral))


@guarded("officer")
async def confirm_hit(request: Request, session: Session) -> Response:
    referral = await call(session.gateway.confirm_watchlist_hit, request.path_params["decision_id"])
    return JSONResponse(as_json(referral))


@guarded("officer")
async def compare(request: Request, session: Session) -> Response:
    limit = request.app.state.settings.max_upload_bytes
    async with request.form(max_files=2, max_fields=4) as form:
        first, second = await upload(form, "first", limit), await upload(form, "second", limit)
    decision = await call(session.gateway.compare, first, second)
    score = next((s for s in decision.scores if s.name == "similarity"), None)
    verdict = {"ACCEPT": "same person", "REFER": "not the same person"}.get(
        decision.outcome, decision.outcome
    )
    if "SERVICE_UNAVAILABLE" in decision.reason_codes:
        verdict = "inconclusive (no calibrated threshold)"
    return JSONResponse(
        {
            "verdict": verdict,
            "outcome": decision.outcome,
            "similarity": score.value if score else None,
            "threshold": score.threshold if score else None,
            "target_far": score.target_far if score else None,
            "reasons": [{"code": c, "message": m} for c, m in decision.reasons],
            "model_version": decision.model_version,
            "decision_id": decision.decision_id,
        }
    )


@guarded("officer")
async def identify(request: Request, session: Session) -> Response:
    limit = request.app.state.settings.max_upload_bytes
    async with request.form(max_files=1, max_fields=4) as form:
        photo = await upload(form, "photo", limit)
        lists = [w.strip() for w in str(form.get("watchlists") or "").split(",") if w.strip()]
        try:
            top_k = int(str(form.get("top_k") or "5"))
        except ValueError:
            return problem(400, "INVALID_ARGUMENT", "top_k: a whole number")
    if not 1 <= top_k <= MAX_TOP_K:
        return problem(400, "INVALID_ARGUMENT", f"top_k: 1 to {MAX_TOP_K}")
    decision, candidates = await call(session.gateway.identify, photo, watchlists=lists, top_k=top_k)
    score = decision.scores[0] if decision.scores else None
    return JSONResponse(
        {
            "outcome": decision.outcome,
            "threshold": score.threshold if score else None,
            "watchlists": lists or ["every list"],
            "candidates": [
                {
                    "subject_id": c.subject_id,
                    "watchlist": c.watchlist,
                    "score": c.score,
                    "category": c.category,
                    "display_name": c.display_name,
                }
                for c in candidates
            ],
            "reasons": [{"code": c, "message": m} for c, m in decision.reasons],
            "decision_id": decision.decision_id,
        }
    )
