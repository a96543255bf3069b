"""The watchlist admin's routes: lists, subjects, photo checks, enrolment and erasure.

Names travel in request bodies only, never in URLs (a URL ends up in logs and browser history);
the subject list is filtered in the page. Bulk import is the page enrolling one subject after
another through the same route, so each enrolment is checked and audited on its own.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from console.sessions import Session
from console.views import as_json
from console.web import call, guarded, json_body, problem
from facegate.errors import InvalidArgument
from facegate.gateway_client import KINDS
from facegate.v1 import watchlist_pb2

#: Most subjects one list page shows (the watchlist service pages at 500).
MAX_SUBJECTS = 2000
MAX_PHOTOS = 16
INFO_FIELDS = ("display_name", "category", "reason", "external_ref")
MAX_TEXT = 200


@guarded("admin")
async def watchlists(request: Request, session: Session) -> Response:
    lists = await call(session.gateway.list_watchlists)
    return JSONResponse({"watchlists": [as_json(w) for w in lists]})


@guarded("admin")
async def create_watchlist(request: Request, session: Session) -> Response:
    body = await json_body(request)
    kind = body.get("kind", "wanted")
    if kind not in KINDS:
        return problem(400, "INVALID_ARGUMENT", f"kind: one of {', '.join(KINDS)}")
    created = await call(
        session.gateway.create_watchlist, str(body.get("name", "")), kind, str(body.get("description", ""))
    )
    return JSONResponse(as_json(created), status_code=201)


@guarded("admin")
async def subjects(request: Request, session: Session) -> Response:
    name, out, token = request.path_params["watchlist"], [], ""
    while len(out) < MAX_SUBJECTS:
        page = await call(session.gateway.list_subjects, name, page_size=500, page_token=token)
        out.extend(as_json(s) for s in page.subjects)
        token = page.next_page_token
        if not token:
            break
    return JSONResponse({"subjects": out[:MAX_SUBJECTS], "truncated": bool(token)})


async def _photos(request: Request) -> tuple[list[bytes], dict[str, str]]:
    limit = request.app.state.settings.max_upload_bytes
    async with request.form(max_files=MAX_PHOTOS, max_fields=16) as form:
        photos = [await f.read(limit + 1) for f in form.getlist("photos") if hasattr(f, "read")]
        fields = {k: str(form.get(k) or "").strip() for k in INFO_FIELDS}
    if not photos:
        raise InvalidArgument("photos: at least one photo is required")
    if any(len(p) > limit for p in photos):
        raise InvalidArgument(f"photos: a photo is over {limit} bytes")
    if any(len(v) > MAX_TEXT for v in fields.values()):
        raise InvalidArgument(f"a text field is over {MAX_TEXT} characters")
    return photos, fields


@guarded("admin")
async def check_photos(request: Request, session: Session) -> Response:
    photos, _ = await _photos(request)
    checks = await call(session.gateway.check_enrolment_photos, photos)
    return JSONResponse({"photos": [as_json(c) for c in checks]})


@guarded("admin")
async def enrol(request: Request, session: Session) -> Response:
    photos, fields = await _photos(request)
    if not fields["display_name"]:
        raise InvalidArgument("display_name is required")
    info = watchlist_pb2.SubjectInfo(**fields, added_by=session.key_id)
    enrolled = await call(
        session.gateway.enroll,
        request.path_params["watchlist"],
        photos,
        info=info,
        idempotency_key=request.headers.get("idempotency-key", "") or uuid.uuid4().hex,
    )
    return JSONResponse(as_json(enrolled), status_code=201)


@guarded("admin")
async def remove(request: Request, session: Session) -> Response:
    removed = await call(
        session.gateway.remove_subject, request.path_params["watchlist"], request.path_params["subject_id"]
    )
    return JSONResponse(as_json(removed))
