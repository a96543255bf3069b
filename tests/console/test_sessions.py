"""Session lifetimes: idle and absolute expiry, and sessions nobody returns to are closed."""

from __future__ import annotations

from console.sessions import SessionStore
from facegate.gateway_client import Gateway


def test_sessions_end_when_idle_or_too_old_and_close_their_gateway_channel() -> None:
    now = [0.0]
    store = SessionStore(idle_s=10, max_s=25, clock=lambda: now[0])
    gateways = [Gateway("127.0.0.1:1", key="k") for _ in range(3)]
    a = store.create("officer-a", "officer", gateways[0])
    b = store.create("officer-b", "officer", gateways[1])
    for t in (8, 16, 24):  # b is used every 8 s: never idle
        now[0] = t
        assert store.get(b.session_id) is b
    assert store.get(a.session_id) is None and not store.alive(a)  # idle since 0
    now[0] = 26
    assert store.get(b.session_id) is None  # past max_s though in use
    c = store.create("admin-c", "admin", gateways[2])
    assert store.get(c.session_id) is c and c.csrf_matches(c.csrf) and not c.csrf_matches(a.csrf)
    assert not c.csrf_matches(None)
    now[0] = 40
    d = store.create("admin-d", "admin", Gateway("127.0.0.1:1", key="k"))
    assert not store.alive(c)  # swept at the next log-in although never asked for again
    store.end_all()
    assert not store.alive(d)
