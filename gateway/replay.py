"""Idempotent retries: the decision for a request id, kept in Redis so a re-sent request gets it back.

A kiosk that loses the answer to a network glitch re-sends the same request id. Deciding again
would make a second decision and a second audit record for one traveller at one gate; instead
the gateway stores the encoded answer under the request id and replays it.

Keys: ``<prefix>:<scope>:<sha256(scope NUL request id)>`` for the answer and the same with
``:claim`` for the in-progress marker. The scope (the caller's key id and the RPC name) keeps
one caller from reading another's decisions and one RPC's answer from being replayed for
another; hashing the scope together with the request id keeps keys unambiguous whatever
characters either holds, and keeps client-chosen strings out of Redis key names.

Concurrent duplicates (the retry arrives while the first is still being decided): ``begin``
sets a claim with SET NX and a short TTL in the same MULTI that reads the answer. The winner
decides and ``put``s (which stores the answer and drops the claim atomically); a loser polls
for the answer every ``poll_s`` for at most ``wait_s`` (each poll also tries the claim, so it
takes over at once if the first request released it or died). Polling rather than pub/sub or
blocking lists: a duplicate is rare, the wait is short and bounded, and there is no second
connection or subscriber thread to manage. If the wait runs out the caller should answer
"still in progress, retry" (ABORTED) rather than decide a second time. The claim TTL is the
longest a decision may take: a gateway that dies mid-decision blocks retries of that one id
for at most ``claim_ttl_s``.

Redis is an optimisation here, never a dependency: every call has a socket timeout of
``timeout_ms``; on a failure the cache counts it, logs one warning per outage, and steps aside
for ``retry_s`` (a dead Redis costs one timeout per window, not one per request). Meanwhile
every lookup is a miss and every claim is won, so requests are decided as if there were no
cache. This is the same pattern as services/embedding/cache.py (the embedding cache); the
shared part is ``RedisGuard`` below, written to be moved into services/runtime/ as is.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway import metrics

log = logging.getLogger("facegate.gateway.replay")

T = TypeVar("T")

REDIS_ERRORS = (redis.RedisError, OSError)


class RedisGuard:
    """One bounded-timeout Redis client that steps aside for ``retry_s`` after any failure.

    ``call(fn, default)`` runs ``fn(client)`` or returns ``default`` (immediately while backing
    off, or after one failed attempt). One warning per outage, one info line on recovery.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        timeout_s: float,
        retry_s: float,
        on_error: Callable[[], None] = lambda: None,
        on_up: Callable[[bool], None] = lambda up: None,
        tls: Mapping[str, Any] | None = None,
    ) -> None:
        """``tls``: redis-py's TLS options for a rediss:// URL (services.runtime.redis_client)."""
        self.name = name
        self.retry_s = retry_s
        self._on_error, self._on_up = on_error, on_up
        self._lock = threading.Lock()
        self._down = False
        self._skip_until = 0.0
        self.client: redis.Redis | None = None
        if url:
            self.client = redis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry_on_timeout=False,
                retry=Retry(NoBackoff(), 0),  # one bounded attempt; the caller goes on without Redis
                health_check_interval=0,
                **(tls or {}),
            )
        on_up(False)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def available(self) -> bool:
        """False when disabled or still inside the back-off window after a failure."""
        if self.client is None:
            return False
        with self._lock:
            return time.monotonic() >= self._skip_until

    def call(self, fn: Callable[[redis.Redis], T], default: T) -> tuple[T, bool]:
        """(result, True) from Redis, or (default, False) when Redis is unusable right now."""
        if not self.available():
            return default, False
        assert self.client is not None
        try:
            result = fn(self.client)
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return default, False
        self._succeeded()
        return result, True

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self._skip_until = time.monotonic() + self.retry_s
            first, self._down = not self._down, True
        self._on_error()
        self._on_up(False)
        if first:  # once per outage, not once per request
            log.warning(
                f"{self.name} unavailable; going on without it",
                extra={"error": type(exc).__name__, "retry_s": self.retry_s},
            )

    def _succeeded(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        self._on_up(True)
        if was_down:
            log.info(f"{self.name} reachable again")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


@dataclass(frozen=True)
class ReplayStart:
    """What ``begin`` found. Exactly one of three cases:

    - ``payload`` set: a replay; answer it as is (no new decision, no audit record);
    - ``owner`` True: decide, then ``put`` the answer (or ``release`` if there is none);
    - neither: a concurrent request with this id is still being decided after ``wait_s``;
      answer "in progress, retry later" instead of deciding twice.
    """

    payload: bytes | None
    owner: bool

    @property
    def in_progress(self) -> bool:
        return self.payload is None and not self.owner


class ReplayCache:
    """Encoded answers by (scope, request id), with a claim so concurrent duplicates wait for the first."""

    def __init__(
        self,
        redis_url: str,
        *,
        ttl_s: int = 86400,
        prefix: str = "facegate:replay",
        timeout_ms: int = 50,
        retry_s: float = 5.0,
        claim_ttl_s: float = 30.0,
        wait_s: float = 5.0,
        poll_s: float = 0.05,
        tls: Mapping[str, Any] | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.claim_ttl_ms = max(1, int(claim_ttl_s * 1000))
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._guard = RedisGuard(
            redis_url,
            name="replay cache",
            timeout_s=timeout_ms / 1000,
            retry_s=retry_s,
            on_error=metrics.REPLAY_CACHE_ERRORS.inc,
            on_up=lambda up: metrics.REPLAY_CACHE_UP.set(1 if up else 0),
            tls=tls,
        )

    @property
    def enabled(self) -> bool:
        return self._guard.enabled

    def key(self, scope: str, request_id: str) -> str:
        """Redis key of the stored answer (readable scope, hashed request id)."""
        digest = hashlib.sha256(scope.encode() + b"\0" + request_id.encode()).hexdigest()
        return f"{self.prefix}:{scope}:{digest}"

    def claim_key(self, scope: str, request_id: str) -> str:
        return self.key(scope, request_id) + ":claim"

    def get(self, scope: str, request_id: str) -> bytes | None:
        """The stored answer, or None (absent, no request id, or Redis unusable)."""
        if not request_id:
            return None
        payload, _ = self._guard.call(lambda r: r.get(self.key(scope, request_id)), None)
        if payload is not None:
            metrics.REPLAY_CACHE_HITS.inc()
        return payload

    def put(self, scope: str, request_id: str, payload: bytes) -> None:
        """Store the answer for ``ttl_s`` and drop the claim, atomically; failures only count."""
        if not request_id:
            return

        def store(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.set(self.key(scope, request_id), payload, ex=self.ttl_s)
            pipe.delete(self.claim_key(scope, request_id))
            pipe.execute()

        self._guard.call(store, None)

    def claim(self, scope: str, request_id: str) -> bool:
        """Take the right to decide this request (SET NX, TTL ``claim_ttl_s``).

        True when taken, and also when Redis is unusable or there is no request id (decide
        without the cache); False when another request with this id holds it.
        """
        if not request_id:
            return True
        won, _ = self._guard.call(
            lambda r: bool(r.set(self.claim_key(scope, request_id), b"1", nx=True, px=self.claim_ttl_ms)),
            True,
        )
        return won

    def release(self, scope: str, request_id: str) -> None:
        """Drop the claim without an answer (the request ended in an error), so a retry decides at once."""
        if request_id:
            self._guard.call(lambda r: r.delete(self.claim_key(scope, request_id)), None)

    def begin(self, scope: str, request_id: str) -> ReplayStart:
        """Replay, decide, or (after waiting up to ``wait_s``) report a concurrent request in progress.

        Each round claims and reads in one MULTI, so a duplicate also takes over at once when
        the first request ``release``s its claim or its claim expires.
        """
        if not request_id:
            return ReplayStart(None, True)
        deadline = time.monotonic() + self.wait_s
        while True:
            (won, payload), ok = self._guard.call(
                lambda r: self._claim_and_read(r, scope, request_id), (True, None)
            )
            if payload is not None:
                metrics.REPLAY_CACHE_HITS.inc()
                return ReplayStart(payload, False)
            if won or not ok:
                return ReplayStart(None, True)
            if time.monotonic() >= deadline:
                metrics.REPLAY_WAIT_TIMEOUTS.inc()
                return ReplayStart(None, False)
            time.sleep(self.poll_s)

    def _claim_and_read(self, r: redis.Redis, scope: str, request_id: str) -> tuple[bool, bytes | None]:
        pipe = r.pipeline(transaction=True)
        pipe.set(self.claim_key(scope, request_id), b"1", nx=True, px=self.claim_ttl_ms)
        pipe.get(self.key(scope, request_id))
        won, payload = pipe.execute()
        return bool(won), payload

    def close(self) -> None:
        self._guard.close()
