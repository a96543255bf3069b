"""Redis cache of embeddings: an optimisation that may never fail or slow down a request much.

Keys are ``<prefix>:<model version>:<flip>:<SHA-256 of the crop>``: a template is only reused
for the exact same pixels embedded by the exact same model and settings. Every Redis call has a
bounded socket timeout; on any failure the cache logs once, counts it, and steps aside for
``retry_s`` (so a dead Redis costs one timeout per retry window, not one per request) and the
request is served uncached.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.embedding import metrics

log = logging.getLogger("facegate.embedding.cache")


def crop_digest(crop: np.ndarray) -> str:
    """Hash of the crop's geometry and pixels (the key never holds the image itself)."""
    digest = hashlib.sha256()
    digest.update(str(crop.shape).encode())
    digest.update(np.ascontiguousarray(crop).tobytes())
    return digest.hexdigest()


class EmbeddingCache:
    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        dimension: int,
        ttl_s: int,
        timeout_s: float,
        retry_s: float,
        tls: Mapping[str, Any] | None = None,
    ) -> None:
        """``tls``: redis-py's TLS options for a rediss:// URL (services.runtime.redis_client)."""
        self.enabled = bool(url)
        self.namespace = namespace
        self.dimension = dimension
        self.ttl_s = ttl_s
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._skip_until = 0.0
        self._client: redis.Redis | None = None
        if self.enabled:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry_on_timeout=False,
                retry=Retry(NoBackoff(), 0),  # one bounded attempt; the cache steps aside instead
                health_check_interval=0,
                **(tls or {}),
            )
        metrics.CACHE_UP.set(0)

    def key(self, digest: str) -> str:
        return f"{self.namespace}:{digest}"

    def _available(self) -> bool:
        if self._client is None:
            return False
        with self._lock:
            return time.monotonic() >= self._skip_until

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self._skip_until = time.monotonic() + self.retry_s
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
        metrics.CACHE_UP.set(0)
        if first:  # log once per outage, not once per request
            log.warning(
                "embedding cache unavailable; serving uncached",
                extra={"error": type(exc).__name__, "retry_s": self.retry_s},
            )

    def _succeeded(self) -> None:
        with self._lock:
            was_down = self._down_since is not None
            self._down_since = None
        metrics.CACHE_UP.set(1)
        if was_down:
            log.info("embedding cache reachable again")

    def get_many(self, digests: Sequence[str]) -> list[np.ndarray | None]:
        """Cached rows for ``digests`` (None for a miss, or for all when Redis is unusable)."""
        if not digests:
            return []
        if not self._available():
            if self._client is not None:
                metrics.CACHE.labels("skipped").inc(len(digests))
            return [None] * len(digests)
        assert self._client is not None
        try:
            raw = self._client.mget([self.key(d) for d in digests])
        except (redis.RedisError, OSError) as exc:
            metrics.CACHE.labels("error").inc(len(digests))
            self._failed(exc)
            return [None] * len(digests)
        self._succeeded()
        out: list[np.ndarray | None] = []
        for value in raw:
            row = self._decode(value)
            metrics.CACHE.labels("hit" if row is not None else "miss").inc()
            out.append(row)
        return out

    def _decode(self, value: bytes | None) -> np.ndarray | None:
        """A stored row, or None when absent or not a unit vector of the right size (treated as a miss)."""
        if value is None or len(value) != self.dimension * 4:
            return None
        row = np.frombuffer(value, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(row)) or abs(float(np.linalg.norm(row)) - 1.0) > 1e-3:
            return None
        return row

    def put_many(self, digests: Sequence[str], rows: np.ndarray) -> None:
        """Store fresh rows; failures only count and log, the caller already has its answer."""
        if not digests or not self._available():
            return
        assert self._client is not None
        try:
            pipe = self._client.pipeline(transaction=False)
            for digest, row in zip(digests, rows, strict=True):
                pipe.set(self.key(digest), np.asarray(row, dtype="<f4").tobytes(), ex=self.ttl_s)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            metrics.CACHE.labels("error").inc(len(digests))
            self._failed(exc)
            return
        self._succeeded()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
