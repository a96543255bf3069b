"""Change feed: keeps every watchlist replica's in-process index in step on one Milvus server.

Why: on a Milvus server the search used to run in Milvus (HNSW), because an in-process index only
sees its own replica's writes. At 1M templates that HNSW missed 1.5-1.8 % of planted wanted-person
matches and its p99 was over 20 ms, while the in-process index is exact (threshold-safe sketch) and
fast. With a feed, every replica keeps the in-process index and Milvus stays the system of record:

- every acknowledged write (list created or dropped, subject enrolled or removed, templates added) is
  appended to a Redis stream by the replica that made it, after Milvus acknowledged it and before
  the RPC returns;
- before every RPC a replica reads the feed's head (one round trip, ~0.2 ms) and, when another
  replica wrote since, applies those changes first. So a write acknowledged by any replica is seen
  by every search that starts after it: the guarantee a single replica gives;
- a replica that cannot be sure it saw every change reloads from Milvus: when the feed was trimmed
  past its position, or Redis lost the feed (its *epoch* key changed or is gone), or a change
  could not be applied.

Failure is closed: if the feed cannot be read, the RPC fails UNAVAILABLE (a gate refers the
traveller to an officer) rather than search what may be stale. A write whose change cannot be
published is kept and sent again (in order) until the feed takes it; the writer gets UNAVAILABLE,
saying the write is stored but not yet seen by the other replicas.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.runtime.errors import Unavailable
from services.watchlist import metrics
from services.watchlist.store import ListRow, SubjectRow, TemplateRow

log = logging.getLogger("facegate.watchlist.feed")

#: The kinds of change a replica publishes, one per kind of acknowledged write.
LIST_CREATED = "list_created"
LIST_DROPPED = "list_dropped"
SUBJECT_ENROLLED = "subject_enrolled"
TEMPLATES_ADDED = "templates_added"
SUBJECT_REMOVED = "subject_removed"
KINDS = (LIST_CREATED, LIST_DROPPED, SUBJECT_ENROLLED, TEMPLATES_ADDED, SUBJECT_REMOVED)

#: Seconds between attempts to send changes the feed did not take.
RESEND_INTERVAL_S = 1.0


def stream_id(value: str) -> tuple[int, int]:
    """A Redis stream id ``<ms>-<seq>`` as a tuple that orders like the stream."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def encode_templates(rows: list[TemplateRow]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        item = {k: v for k, v in asdict(row).items() if k != "embedding"}
        vector = np.asarray(row.embedding, dtype="<f4")
        item["embedding"] = base64.b64encode(vector.tobytes()).decode("ascii")
        out.append(item)
    return out


def decode_templates(items: list[dict[str, Any]]) -> list[TemplateRow]:
    rows = []
    for item in items:
        vector = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4").astype(np.float32)
        rows.append(TemplateRow(**{**item, "embedding": vector}))
    return rows


def list_payload(row: ListRow) -> dict[str, Any]:
    return {"list": asdict(row)}


def enrolled_payload(subject: SubjectRow, templates: list[TemplateRow]) -> dict[str, Any]:
    return {"subject": asdict(subject), "templates": encode_templates(templates)}


@dataclass(frozen=True)
class Head:
    """Where the feed stands: its epoch, the last id it ever gave, how many entries it ever took
    and how many it still holds (the difference was trimmed)."""

    epoch: str | None
    last_id: str
    added: int
    length: int


class ChangeFeed:
    """The Redis side: one stream of changes and one epoch key per Milvus collection set."""

    def __init__(
        self, url: str, key: str, *, timeout_s: float, max_len: int, tls: Mapping[str, Any] | None = None
    ) -> None:
        """``tls``: redis-py's TLS options for a rediss:// URL (services.runtime.redis_client)."""
        self.stream = f"{key}:changes"
        self.epoch_key = f"{key}:epoch"
        self.max_len = max_len
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
            **(tls or {}),
        )

    def close(self) -> None:
        self._client.close()

    def ensure_epoch(self) -> str:
        """The feed's epoch, made now if Redis has none (a new feed, or one Redis lost)."""
        self._client.set(self.epoch_key, uuid.uuid4().hex, nx=True)
        value = self._client.get(self.epoch_key)
        if value is None:  # deleted between the two calls: the next sync makes it again
            raise redis.RedisError("change feed epoch vanished")
        return value.decode()

    def head(self) -> Head:
        pipe = self._client.pipeline(transaction=False)
        pipe.get(self.epoch_key)
        pipe.xinfo_stream(self.stream)
        epoch, info = pipe.execute(raise_on_error=False)
        if isinstance(epoch, Exception):
            raise epoch
        if isinstance(info, redis.ResponseError) and "no such key" in str(info).lower():
            info = {}
        elif isinstance(info, Exception):
            raise info
        last = info.get("last-generated-id", b"0-0")
        return Head(
            epoch=epoch.decode() if epoch is not None else None,
            last_id=last.decode() if isinstance(last, bytes) else str(last),
            added=int(info.get("entries-added", 0)),
            length=int(info.get("length", 0)),
        )

    def publish(self, kind: str, origin: str, payload: dict[str, Any]) -> str:
        fields = {"kind": kind, "origin": origin, "data": json.dumps(payload, separators=(",", ":"))}
        new_id = self._client.xadd(self.stream, fields, maxlen=self.max_len, approximate=True)
        return new_id.decode() if isinstance(new_id, bytes) else str(new_id)

    def read_after(self, after: str, count: int = 1000) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Entries after id ``after``: (id, kind, origin, payload), oldest first."""
        rows = self._client.xrange(self.stream, min=f"({after}", max="+", count=count)
        out = []
        for raw_id, fields in rows:
            out.append(
                (
                    raw_id.decode(),
                    fields[b"kind"].decode(),
                    fields[b"origin"].decode(),
                    json.loads(fields[b"data"]),
                )
            )
        return out


class Replication:
    """One replica's place in the feed: the check before every RPC, catch-up, reload, resend.

    ``apply(kind, payload)`` changes the replica's in-memory state for another replica's change and
    must be idempotent (a change may meet state that already holds it, e.g. right after a reload);
    ``reload()`` rebuilds that state from Milvus. Both run under ``lock``, the service's write lock.
    """

    def __init__(
        self,
        feed: ChangeFeed,
        *,
        apply: Callable[[str, dict[str, Any]], None],
        reload: Callable[[], None],
        lock: threading.RLock,
        follow: bool = True,
    ) -> None:
        self.feed = feed
        self.origin = uuid.uuid4().hex
        self.follow = follow
        self._apply = apply
        self._reload = reload
        self._lock = lock
        self._epoch: str | None = None
        self._applied = "0-0"
        self._position = 0  # entries of the feed this replica has passed (applied or its own)
        self._unsent: list[tuple[str, dict[str, Any]]] = []
        self._unsent_lock = threading.Lock()
        self._stop = threading.Event()
        self._resender: threading.Thread | None = None

    # -- start and stop ----------------------------------------------------------------------------

    def mark(self) -> None:
        """Take the feed's position *before* the first load from Milvus: every change published
        after this is applied on top of that load (idempotently), none before it is missed."""
        self._epoch = self.feed.ensure_epoch()
        head = self.feed.head()
        self._applied, self._position = head.last_id, head.added
        self._resender = threading.Thread(target=self._resend_loop, name="watchlist-feed-resend", daemon=True)
        self._resender.start()

    def close(self) -> None:
        self._stop.set()
        if self._resender is not None:
            self._resender.join(timeout=RESEND_INTERVAL_S * 2)
        self.feed.close()

    # -- before every RPC --------------------------------------------------------------------------

    def sync(self) -> None:
        """Apply every change other replicas published before now; UNAVAILABLE if the feed is down."""
        if not self.follow:
            return
        try:
            head = self.feed.head()
            if head.epoch == self._epoch and head.last_id == self._applied:
                return
            with self._lock:
                self._catch_up()
        except redis.RedisError as exc:
            metrics.FEED_ERRORS.labels("read").inc()
            log.warning("change feed unreadable", extra={"error_type": type(exc).__name__})
            raise Unavailable(
                "watchlist change feed unavailable: this replica cannot be sure it holds every other "
                "replica's latest writes"
            ) from None

    def _catch_up(self) -> None:
        head = self.feed.head()
        behind = (
            head.epoch != self._epoch
            or stream_id(head.last_id) < stream_id(self._applied)
            or head.added - head.length > self._position
        )
        if behind:
            self._full_reload("epoch" if head.epoch != self._epoch else "gap")
            head = self.feed.head()
        while stream_id(self._applied) < stream_id(head.last_id):
            entries = self.feed.read_after(self._applied)
            if not entries:
                break  # the rest was trimmed away since the head was read: the next sync reloads
            for entry_id, kind, origin, payload in entries:
                if origin != self.origin:
                    try:
                        self._apply(kind, payload)
                    except Exception:
                        log.exception("change could not be applied; reloading", extra={"kind": kind})
                        self._full_reload("apply")
                        return
                    metrics.FEED_APPLIED.labels(kind).inc()
                self._applied = entry_id
                self._position += 1

    def _full_reload(self, reason: str) -> None:
        """Reload from Milvus. The position (epoch included) is taken before the load and adopted
        after it, so calls that arrive meanwhile fail the fast check and wait for the lock."""
        start = time.perf_counter()
        epoch = self.feed.ensure_epoch()
        head = self.feed.head()
        self._reload()
        self._epoch, self._applied, self._position = epoch, head.last_id, head.added
        metrics.FEED_RELOADS.labels(reason).inc()
        log.warning(
            "in-process index reloaded from Milvus",
            extra={"reason": reason, "seconds": round(time.perf_counter() - start, 2)},
        )

    # -- after every acknowledged write --------------------------------------------------------------

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        """Send a change this replica made (after Milvus acknowledged it, under the write lock)."""
        with self._unsent_lock:
            self._unsent.append((kind, payload))
        if not self._flush():
            raise Unavailable(
                "stored, and served by this watchlist replica, but the change feed is unavailable: the "
                "other replicas do not hold it yet; it is sent again as soon as the feed answers"
            )

    def pending(self) -> int:
        with self._unsent_lock:
            return len(self._unsent)

    def _flush(self) -> bool:
        """Send unsent changes in order; False if some remain."""
        with self._unsent_lock:
            while self._unsent:
                kind, payload = self._unsent[0]
                try:
                    self.feed.publish(kind, self.origin, payload)
                except redis.RedisError as exc:
                    metrics.FEED_ERRORS.labels("publish").inc()
                    log.warning("change feed refused a change", extra={"error_type": type(exc).__name__})
                    metrics.FEED_UNSENT.set(len(self._unsent))
                    return False
                self._unsent.pop(0)
            metrics.FEED_UNSENT.set(0)
            return True

    def _resend_loop(self) -> None:
        while not self._stop.wait(RESEND_INTERVAL_S):
            if self.pending():
                self._flush()
