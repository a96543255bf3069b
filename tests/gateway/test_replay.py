"""Replay cache on real Redis: round trip, TTL, scope isolation, claims between concurrent
duplicates, and an outage of a private redis-server (never the shared one) mid-test."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from gateway import metrics
from gateway.replay import ReplayCache

LOGGER = "facegate.gateway.replay"


def counter(c) -> float:
    return c._value.get()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis (tests/conftest.py), deleted afterwards."""
    prefix = f"facegate:test:replay:{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def shared(redis_url: str, prefix) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def make(prefix: str, url: str, **kw: object) -> ReplayCache:
    settings: dict = {"ttl_s": 120, "prefix": prefix, "timeout_ms": 100, "retry_s": 0.5}
    settings.update(kw)
    return ReplayCache(url, **settings)


# --- on the shared Redis ---------------------------------------------------------------------------


def test_round_trip_and_hits_counted(redis_url, prefix):
    cache = make(prefix, redis_url)
    assert cache.get("kiosk-1:VerifyTraveller", "req-1") is None
    hits = counter(metrics.REPLAY_CACHE_HITS)
    cache.put("kiosk-1:VerifyTraveller", "req-1", b"\x08\x01decision")
    assert cache.get("kiosk-1:VerifyTraveller", "req-1") == b"\x08\x01decision"
    assert counter(metrics.REPLAY_CACHE_HITS) == hits + 1
    assert counter(metrics.REPLAY_CACHE_UP) == 1
    cache.close()


def test_answers_expire_after_ttl_s_and_claims_after_claim_ttl_s(redis_url, prefix, shared):
    cache = make(prefix, redis_url, ttl_s=120, claim_ttl_s=7)
    assert cache.claim("s", "req-ttl")
    assert 0 < shared.pttl(cache.claim_key("s", "req-ttl")) <= 7000
    cache.put("s", "req-ttl", b"x")
    assert 110 <= shared.ttl(cache.key("s", "req-ttl")) <= 120
    assert not shared.exists(cache.claim_key("s", "req-ttl"))  # put drops the claim
    cache.close()


def test_scopes_are_isolated_and_request_ids_are_hashed(redis_url, prefix):
    cache = make(prefix, redis_url)
    cache.put("kiosk-1:VerifyTraveller", "req-1", b"mine")
    assert cache.get("kiosk-2:VerifyTraveller", "req-1") is None  # another caller
    assert cache.get("kiosk-1:Identify", "req-1") is None  # another RPC
    assert cache.get("kiosk-1:VerifyTraveller", "req-2") is None
    key = cache.key("kiosk-1:VerifyTraveller", "req-1")
    assert key.startswith(f"{prefix}:kiosk-1:VerifyTraveller:") and "req-1" not in key
    # Colons cannot make two scopes collide: the digest covers scope and id together.
    assert cache.key("a:b", "c") != cache.key("a", "b:c")
    cache.close()


def test_no_request_id_means_no_replay(redis_url, prefix):
    cache = make(prefix, redis_url)
    cache.put("s", "", b"x")
    assert cache.get("s", "") is None
    assert cache.claim("s", "") is True
    start = cache.begin("s", "")
    assert start.owner and start.payload is None
    cache.close()


def test_claim_is_exclusive_and_release_frees_it(redis_url, prefix):
    cache = make(prefix, redis_url)
    assert cache.claim("s", "req") is True
    assert cache.claim("s", "req") is False
    assert cache.claim("other", "req") is True  # scoped too
    cache.release("s", "req")
    assert cache.claim("s", "req") is True
    cache.close()


def test_begin_replays_waits_or_reports_in_progress(redis_url, prefix):
    cache = make(prefix, redis_url, wait_s=0.2, poll_s=0.02)
    first = cache.begin("s", "req")
    assert first.owner and first.payload is None
    timeouts = counter(metrics.REPLAY_WAIT_TIMEOUTS)
    t0 = time.monotonic()
    busy = cache.begin("s", "req")  # the first is still deciding: wait, then give up
    assert busy.in_progress and 0.2 <= time.monotonic() - t0 < 1.0
    assert counter(metrics.REPLAY_WAIT_TIMEOUTS) == timeouts + 1
    cache.put("s", "req", b"answer")
    again = cache.begin("s", "req")
    assert again.payload == b"answer" and not again.owner
    # A request that ended without an answer releases its claim: a retry decides at once.
    assert cache.begin("s", "req-2").owner
    cache.release("s", "req-2")
    assert cache.begin("s", "req-2").owner
    cache.close()


@pytest.mark.parametrize("ending", ["put", "release"])
def test_two_concurrent_duplicates_decide_once(redis_url, prefix, ending):
    caches = [make(prefix, redis_url, wait_s=5, poll_s=0.02) for _ in range(2)]  # as if two gateway workers
    barrier = threading.Barrier(2)
    decided: list[int] = []
    answers: list[bytes | None] = [None, None]

    def request(i: int) -> None:
        cache = caches[i]
        barrier.wait()
        start = cache.begin("kiosk-1:VerifyTraveller", "same-id")
        if start.payload is not None:
            answers[i] = start.payload
            return
        assert start.owner
        decided.append(i)
        time.sleep(0.3)  # deciding
        if ending == "put" or len(decided) > 1:
            cache.put("kiosk-1:VerifyTraveller", "same-id", b"decision-from-%d" % i)
            answers[i] = b"decision-from-%d" % i
        else:
            cache.release("kiosk-1:VerifyTraveller", "same-id")  # e.g. INVALID_ARGUMENT: no answer kept

    threads = [threading.Thread(target=request, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    if ending == "put":
        assert len(decided) == 1  # one decision; the duplicate got its answer
        assert answers[0] == answers[1] == b"decision-from-%d" % decided[0]
    else:
        assert len(decided) == 2  # the waiter took over as soon as the claim was released
        assert answers[decided[1]] == b"decision-from-%d" % decided[1]
    for cache in caches:
        cache.close()


def test_empty_url_disables_the_cache():
    cache = ReplayCache("", ttl_s=60)
    assert not cache.enabled
    cache.put("s", "r", b"x")
    assert cache.get("s", "r") is None
    assert cache.begin("s", "r").owner


# --- outage, on a private redis-server ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own (memory only) that the test may stop and start again."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed"
        self.exe = exe
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [self.exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [*args, "--enable-debug-command", "local"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                assert self.proc.poll() is None, "private redis-server exited"
                assert time.monotonic() < deadline, "private redis-server did not answer"
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_outage_misses_quickly_warns_once_and_recovers(private_redis, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    cache = make("facegate:replay", private_redis.url, timeout_ms=100, retry_s=0.5)
    cache.put("s", "before", b"kept")
    assert cache.get("s", "before") == b"kept"

    private_redis.stop()
    errors = counter(metrics.REPLAY_CACHE_ERRORS)
    t0 = time.monotonic()
    assert cache.get("s", "before") is None  # a miss, not an exception
    cache.put("s", "during", b"lost")
    assert cache.claim("s", "during") is True  # decide without the cache
    start = cache.begin("s", "during")
    assert start.owner and start.payload is None
    cache.release("s", "during")
    assert time.monotonic() - t0 < 0.5  # one connect failure, then skipped during retry_s
    assert counter(metrics.REPLAY_CACHE_ERRORS) == errors + 1
    assert counter(metrics.REPLAY_CACHE_UP) == 0
    time.sleep(0.6)  # past retry_s: Redis is tried again, fails again, still the same outage
    assert cache.get("s", "before") is None
    assert counter(metrics.REPLAY_CACHE_ERRORS) == errors + 2
    assert len(_warnings(caplog)) == 1

    private_redis.start()  # same port, empty memory
    assert cache.get("s", "during") is None  # may still be inside the back-off window
    time.sleep(0.6)
    cache.put("s", "after", b"back")
    assert cache.get("s", "after") == b"back"
    assert counter(metrics.REPLAY_CACHE_UP) == 1
    assert any("reachable again" in r.getMessage() for r in caplog.records if r.name == LOGGER)
    assert len(_warnings(caplog)) == 1
    cache.close()


def test_a_slow_redis_is_bypassed_within_timeout_ms(private_redis, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    cache = make("facegate:replay", private_redis.url, timeout_ms=50, retry_s=30)
    cache.put("s", "r", b"x")
    blocker = redis.Redis.from_url(private_redis.url)
    sleeper = threading.Thread(target=lambda: blocker.execute_command("DEBUG", "SLEEP", "2"))
    sleeper.start()
    time.sleep(0.2)  # let DEBUG SLEEP take hold of the server
    errors = counter(metrics.REPLAY_CACHE_ERRORS)
    t0 = time.monotonic()
    assert cache.get("s", "r") is None  # times out after 50 ms
    assert time.monotonic() - t0 < 0.5
    t1 = time.monotonic()
    assert cache.begin("s", "r").owner  # inside retry_s: Redis is not even asked
    assert time.monotonic() - t1 < 0.05
    assert counter(metrics.REPLAY_CACHE_ERRORS) == errors + 1
    assert len(_warnings(caplog)) == 1
    sleeper.join()
    blocker.close()
    cache.close()
