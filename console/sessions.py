"""Console sessions: the user's API key stays on the server, the browser holds a random session id.

Why: a key in a browser (a cookie value, local storage, a URL) can be read by any script injected
into the page or leak through history and logs; a session id is useless once the session ends.
Each session has its own CSRF token (sent back by the pages' JavaScript in a header, checked on
every state-changing request) and its own open gateway client, closed when the session ends.
Sessions live in this process's memory: restarting the console logs everyone out, as it should.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from facegate.gateway_client import Gateway


@dataclass
class Session:
    """One logged-in user: who (key id, role), their gateway client, their CSRF token."""

    session_id: str
    key_id: str
    role: str
    gateway: Gateway
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = 0.0
    last_seen: float = 0.0

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


class SessionStore:
    """Sessions by id, ended after ``idle_s`` unused or ``max_s`` in all; thread-safe."""

    def __init__(self, idle_s: float, max_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s, self.max_s, self.clock = idle_s, max_s, clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, key_id: str, role: str, gateway: Gateway) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), key_id, role, gateway, created=now, last_seen=now)
        with self._lock:
            for old in [s for s in self._sessions.values() if self._expired(s, now)]:
                self._end(old)  # sessions nobody came back to: close their gateway channels too
            self._sessions[session.session_id] = session
        return session

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_seen > self.idle_s or now - session.created > self.max_s

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle clock restarted), or None."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                self._end(session)
                return None
            session.last_seen = now
            return session

    def alive(self, session: Session) -> bool:
        with self._lock:
            return self._sessions.get(session.session_id) is session

    def end(self, session: Session) -> None:
        with self._lock:
            self._end(session)

    def end_all(self) -> None:
        with self._lock:
            for session in list(self._sessions.values()):
                self._end(session)

    def _end(self, session: Session) -> None:
        if self._sessions.pop(session.session_id, None) is not None:
            session.gateway.close()
