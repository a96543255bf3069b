"""Every console route × every role (and no session), CSRF on every state-changing route, log-in and
log-out, the session cookie, the security headers, and what the routes return on the real stack."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.console.conftest import login, login_token
from tests.gateway.conftest import OTHER_PERSON, TRAVELLER, gate_frame

pytestmark = pytest.mark.slow

NOBODY = "no session"
ROLES = ("officer", "admin", "ops")
UNKNOWN = uuid.uuid4().hex
LIVE = gate_frame(TRAVELLER / "Amram_Mitzna_0001.jpg")
PORTRAIT = (TRAVELLER / "Amram_Mitzna_0002.jpg").read_bytes()

# (method, path, role allowed (None: any), request kwargs, status for the allowed role)
ROUTES = [
    ("GET", "/officer", "officer", {}, 200),
    ("GET", "/admin", "admin", {}, 200),
    ("GET", "/ops", "ops", {}, 200),
    ("GET", "/api/me", None, {}, 200),
    ("GET", "/api/referrals", "officer", {}, 200),
    ("GET", f"/api/referrals/{UNKNOWN}", "officer", {}, 404),
    ("POST", f"/api/referrals/{UNKNOWN}/outcome", "officer", {"json": {"outcome": "admitted"}}, 404),
    ("POST", f"/api/referrals/{UNKNOWN}/outcome", "officer", {"json": {"outcome": "waved"}}, 400),
    ("POST", f"/api/referrals/{UNKNOWN}/confirm-hit", "officer", {}, 404),
    ("POST", "/api/compare", "officer", {"files": {"first": ("a.jpg", PORTRAIT)}}, 400),
    ("POST", "/api/identify", "officer", {"files": {"other": ("a.jpg", PORTRAIT)}}, 400),
    ("GET", "/api/watchlists", "admin", {}, 200),
    ("POST", "/api/watchlists", "admin", {"json": {"name": "Not A Name!"}}, 400),
    ("GET", "/api/watchlists/no_such_list/subjects", "admin", {}, 404),
    ("POST", "/api/watchlists/no_such_list/subjects", "admin", {"data": {"display_name": "x"}}, 400),
    ("DELETE", f"/api/watchlists/no_such_list/subjects/{UNKNOWN}", "admin", {}, 404),
    ("POST", "/api/photos/check", "admin", {"data": {"x": "y"}}, 400),
    ("GET", "/api/status", "ops", {}, 200),
]
STATE_CHANGING = [r for r in ROUTES if r[0] not in ("GET", "HEAD")]


def send(client: httpx.Client, method: str, path: str, csrf: str | None, **kwargs) -> httpx.Response:
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    return client.request(method, path, headers=headers, **kwargs)


@pytest.mark.parametrize("case", [NOBODY, *ROLES])
@pytest.mark.parametrize(("method", "path", "role", "kwargs", "allowed_status"), ROUTES)
def test_every_route_enforces_its_role(console, logged_in, case, method, path, role, kwargs, allowed_status):
    if case == NOBODY:
        with console.client() as client:
            reply = send(client, method, path, None, **kwargs)
        if path.startswith("/api/"):
            assert reply.status_code == 401 and reply.json()["error"] == "UNAUTHENTICATED"
        else:
            assert reply.status_code == 303 and reply.headers["location"] == "/login"
        return
    client, me = logged_in(case)
    reply = send(client, method, path, me["csrf"], **kwargs)
    if role is None or role == case:
        assert reply.status_code == allowed_status, reply.text
    else:
        assert reply.status_code == 403, reply.text
        if path.startswith("/api/"):
            assert reply.json()["error"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("token", ["missing", "forged", "another session's", "cross-origin"])
@pytest.mark.parametrize(("method", "path", "role", "kwargs", "allowed_status"), STATE_CHANGING)
def test_a_state_changing_request_needs_the_sessions_csrf_token(
    console, logged_in, token, method, path, role, kwargs, allowed_status
):
    client, me = logged_in(role)
    headers = {
        "missing": {},
        "forged": {"X-CSRF-Token": "forged-" + me["csrf"][7:]},
        "another session's": {"X-CSRF-Token": logged_in("ops" if role != "ops" else "admin")[1]["csrf"]},
        "cross-origin": {"X-CSRF-Token": me["csrf"], "Origin": "http://evil.example"},
    }[token]
    reply = client.request(method, path, headers=headers, **kwargs)
    assert reply.status_code == 403 and reply.json()["error"] == "CSRF"


def test_log_in_needs_its_own_csrf_token_and_a_valid_console_key(console) -> None:
    keys = console.stack.keys
    with console.client() as client:
        token = login_token(client)
        no_token = client.post("/api/login", json={"key": keys["officer"]})
        assert no_token.status_code == 403 and no_token.json()["error"] == "CSRF"
        forged = client.post(
            "/api/login", json={"key": keys["officer"]}, headers={"X-CSRF-Token": "x" + token}
        )
        assert forged.status_code == 403
        assert "fg_session" not in client.cookies
    with console.client() as client:
        assert login(client, "fg_officer-00000000_forged").status_code == 401
    with console.client() as client:
        kiosk = login(client, keys["kiosk"])
        assert kiosk.status_code == 403 and "kiosk" in kiosk.json()["message"]
    with console.client() as client:
        assert login(client, "").status_code == 400


def test_the_session_cookie_is_http_only_strict_and_ends_at_log_out(console) -> None:
    with console.client() as client:
        reply = login(client, console.stack.keys["admin"])
        cookie = next(v for k, v in reply.headers.multi_items() if k == "set-cookie" and "fg_session=" in v)
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert console.stack.keys["admin"] not in cookie and console.stack.keys["admin"] not in reply.text
        me = reply.json()
        assert me["role"] == "admin" and me["home"] == "/admin"
        session = client.cookies["fg_session"]
        assert client.get("/").headers["location"] == "/admin"
        assert client.post("/api/logout").status_code == 403  # log-out is state-changing too
        assert client.post("/api/logout", headers={"X-CSRF-Token": me["csrf"]}).status_code == 200
        assert client.get("/api/me").status_code == 401
    with console.client() as stale:  # the old session id is worth nothing now
        stale.cookies.set("fg_session", session)
        assert stale.get("/api/me").status_code == 401


def test_every_answer_carries_the_security_headers(console, logged_in) -> None:
    client, _ = logged_in("officer")
    for path in ("/login", "/officer", "/api/referrals", "/static/console.js"):
        headers = client.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store", path


def refer(console, gate_id: str) -> str:
    from facegate.gateway_client import Gateway

    with Gateway(console.stack.target, key=console.stack.keys["kiosk"], timeout=120) as kiosk:
        decision = kiosk.verify_traveller(LIVE, portrait=OTHER_PERSON.read_bytes(), gate_id=gate_id)
    assert decision.outcome == "REFER"
    return decision.decision_id


def test_the_queue_streams_a_new_referral_and_the_officer_closes_it(console, logged_in) -> None:
    client, me = logged_in("officer")
    with client.stream("GET", "/api/referrals/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        decision_id = refer(console, "gate-sse")
        seen = []
        for line in lines:
            if line.startswith("data: "):
                seen = [r["decision_id"] for r in json.loads(line[6:])["referrals"]]
                if decision_id in seen:
                    break
        assert decision_id in seen
    detail = client.get(f"/api/referrals/{decision_id}").json()
    assert detail["images_held"] and detail["live"]["data"] and detail["portrait"]["data"]
    assert detail["record"]["gate_id"] == "gate-sse"
    closed = client.post(
        f"/api/referrals/{decision_id}/outcome",
        json={"outcome": "escalated"},
        headers={"X-CSRF-Token": me["csrf"]},
    )
    assert closed.status_code == 200 and closed.json()["outcome"] == "REFERRAL_OUTCOME_ESCALATED"
    assert "live" not in closed.json() or not closed.json()["live"].get("data")
    again = client.post(
        f"/api/referrals/{decision_id}/outcome",
        json={"outcome": "admitted"},
        headers={"X-CSRF-Token": me["csrf"]},
    )
    assert again.status_code == 409 and "already closed" in again.json()["message"]
    assert decision_id not in [r["decision_id"] for r in client.get("/api/referrals").json()["referrals"]]


def test_compare_and_identify_answer_with_scores(console, logged_in) -> None:
    client, me = logged_in("officer")
    csrf = {"X-CSRF-Token": me["csrf"]}
    same = client.post(
        "/api/compare", files={"first": ("a.jpg", LIVE), "second": ("b.jpg", PORTRAIT)}, headers=csrf
    )
    assert same.status_code == 200, same.text
    body = same.json()
    assert body["verdict"] == "same person" and body["similarity"] >= body["threshold"] > 0
    other = client.post(
        "/api/compare",
        files={"first": ("a.jpg", LIVE), "second": ("b.jpg", OTHER_PERSON.read_bytes())},
        headers=csrf,
    ).json()
    assert other["verdict"] == "not the same person" and other["similarity"] < other["threshold"]
    found = client.post(
        "/api/identify", files={"photo": ("p.jpg", PORTRAIT)}, data={"top_k": "3"}, headers=csrf
    ).json()
    assert found["threshold"] > 0 and isinstance(found["candidates"], list)
    bad = client.post(
        "/api/compare",
        files={"first": ("a.jpg", b"not an image"), "second": ("b.jpg", PORTRAIT)},
        headers=csrf,
    )
    assert bad.status_code == 400 and bad.json()["error"] == "INVALID_ARGUMENT"


def test_admin_checks_enrols_lists_and_removes_with_names_only_in_bodies(console, logged_in) -> None:
    client, me = logged_in("admin")
    csrf = {"X-CSRF-Token": me["csrf"]}
    name = "console_" + uuid.uuid4().hex[:8]
    assert (
        client.post("/api/watchlists", json={"name": name, "kind": "wanted"}, headers=csrf).status_code == 201
    )
    checks = client.post(
        "/api/photos/check", files=[("photos", ("a.jpg", LIVE)), ("photos", ("b.jpg", b"junk"))], headers=csrf
    ).json()["photos"]
    assert [c["acceptable"] for c in checks] == [True, False] and checks[1]["problem"]
    enrolled = client.post(
        f"/api/watchlists/{name}/subjects",
        files=[("photos", ("a.jpg", LIVE))],
        data={"display_name": "Console Testperson", "category": "wanted"},
        headers=csrf,
    )
    assert enrolled.status_code == 201, enrolled.text
    subject_id = enrolled.json()["subject"]["subject_id"]
    listed = client.get(f"/api/watchlists/{name}/subjects").json()["subjects"]
    assert [(s["subject_id"], s["info"]["display_name"]) for s in listed] == [
        (subject_id, "Console Testperson")
    ]
    assert client.delete(f"/api/watchlists/{name}/subjects/{subject_id}", headers=csrf).status_code == 200
    assert client.get(f"/api/watchlists/{name}/subjects").json()["subjects"] == []
    ops_client, _ = logged_in("ops")
    status = ops_client.get("/api/status").json()
    assert name in [w["name"] for w in status["watchlists"]] and status["metrics_links"]["gateway"].endswith(
        "/metrics"
    )
    from facegate.gateway_client import Gateway

    with Gateway(console.stack.target, key=console.stack.keys["admin"]) as gw:
        gw.delete_watchlist(name)


def test_the_console_logs_no_key_name_or_image(console, logged_in) -> None:
    """Runs after the tests above (same session): nothing they sent may be in the console's log."""
    logged_in("officer")
    text = "\n".join(json.dumps(vars(r), default=str) for r in console.records)
    assert console.records, "the console logged nothing: this test would prove nothing"
    for secret in (*console.stack.keys.values(), "Console Testperson", "Amram", "Mitzna"):
        assert secret not in text
    assert all(set(vars(r)) >= {"method", "route", "status"} for r in console.records if r.msg == "request")
    assert "/api/" not in text  # routes are logged by handler name, never by path


def test_an_oversized_upload_is_refused_unread(console, logged_in) -> None:
    client, me = logged_in("officer")
    limit = 20 * 1024 * 1024  # the default FACEGATE_CONSOLE_MAX_UPLOAD_BYTES
    big = client.post(
        "/api/compare",
        files={"first": ("a.jpg", b"\xff" * (limit + 1)), "second": ("b.jpg", PORTRAIT)},
        headers={"X-CSRF-Token": me["csrf"]},
    )
    assert big.status_code == 413


def test_a_revoked_key_ends_its_console_session(console) -> None:
    from gateway.keys import add_key, revoke_key

    key_file = console.stack.servicer.settings.key_file
    key, entry = add_key(key_file, "officer", "console test: revoked below")
    time.sleep(1.5)  # the gateway re-reads its key file within a second
    client, _ = console.login(key)
    try:
        assert client.get("/api/referrals").status_code == 200
        revoke_key(key_file, entry.key_id)
        time.sleep(1.5)
        refused = client.get("/api/referrals")
        assert refused.status_code == 401 and refused.json()["error"] == "UNAUTHENTICATED"
        assert client.get("/api/me").status_code == 401  # the session ended with the key
    finally:
        client.close()
