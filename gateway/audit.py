"""The gateway's audit store: every decision and admin action, hash-chained and on disk before it is answered.

``AuditStore`` is the interface the gateway codes against, so a central store (a database, a
WORM bucket, a log service) can replace the file later. ``FileAuditStore`` is the default: one
append-only JSON-lines file (record format and chain: ``facegate.audit``).

Guarantees of ``FileAuditStore.append``, and why:
- the record is written with O_APPEND and fsync'ed before ``append`` returns, so an answered
  decision is never lost to a crash (the file's directory is fsync'ed too when the file is new);
- a failed write raises ``AuditWriteError``; the gateway then answers no decision (fail closed);
  a partly written line is cut back off so the chain stays appendable, and if even that fails
  every later append fails too, rather than extending a log with a torn record in it;
- one lock serialises appends (seq and prev_hash must follow each other exactly), and an
  exclusive ``flock`` keeps a second process from forking the chain in the same file.

At start the existing file is verified in full. A broken chain stops the store with
``AuditChainError``: appending to it would bury the tampering (or the damage) under fresh, valid
records. An operator moves the file aside after looking at it (``facegate audit verify``).
"""

from __future__ import annotations

import copy
import errno
import fcntl
import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from facegate.audit import (
    GENESIS_HASH,
    AuditFieldError,
    LogLine,
    chain,
    default_log_path,
    encode_line,
    record_hash,
    utc_now_iso,
    verify_log,
)
from gateway import metrics

log = logging.getLogger("facegate.gateway.audit")

Record = dict[str, Any]


class AuditError(RuntimeError):
    """Base of the audit store's failures; the gateway treats each as "cannot decide" (fail closed)."""


class AuditWriteError(AuditError):
    """A record could not be written and fsync'ed: the decision it belongs to must not be answered."""


class AuditChainError(AuditError):
    """The log on disk is broken (edited, truncated, reordered); the store refuses to append to it."""


class AuditLogInUseError(AuditError):
    """Another process holds the log: two writers would fork the chain."""


class AuditStore(ABC):
    """Where decisions are recorded. Implementations must be thread-safe."""

    @abstractmethod
    def append(self, body: Mapping[str, Any]) -> Record:
        """Record ``body`` (fields: ``facegate.audit.validate_body``); return the chained record.

        Returns only once the record is durable. Raises AuditFieldError (ValueError) for a body
        that is not allowed, AuditWriteError when it could not be stored.
        """

    @abstractmethod
    def get(self, decision_id: str) -> Record | None:
        """The record of one decision, or None."""

    @abstractmethod
    def recent(self, outcome: str | None = None, limit: int = 50) -> list[Record]:
        """The latest records, newest first, optionally only one outcome (officers list REFERs)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release files or connections."""

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _fsync_dir(path: Path) -> None:
    """Make a new directory entry durable (a new file's name is lost on a crash without this)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileAuditStore(AuditStore):
    """Append-only, hash-chained JSON-lines file (default ``$FACEGATE_VAR_DIR/audit/audit.log``).

    Keeps an index decision id -> (offset, length) for ``get`` and the last ``recent_size``
    records in memory for ``recent``; both are rebuilt from the file at start, in the same pass
    that verifies the chain.
    """

    def __init__(self, path: str | Path | None = None, *, recent_size: int = 1000) -> None:
        self.path = Path(path) if path is not None else default_log_path()
        self._lock = threading.Lock()
        self._index: dict[str, tuple[int, int]] = {}
        self._recent: deque[Record] = deque(maxlen=recent_size)
        self._seq = 0
        self._last_hash = GENESIS_HASH
        self._broken: str | None = None
        self._fd = self._open()
        try:
            self._recover()
        except BaseException:
            os.close(self._fd)
            raise
        self._size = os.fstat(self._fd).st_size

    # --- start-up ---------------------------------------------------------------------------

    def _open(self) -> int:
        """Open (creating if needed) for append and take the single-writer lock."""
        new_dir = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        try:
            fd, created = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
        except FileExistsError:
            fd, created = os.open(self.path, flags), False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AuditLogInUseError(f"audit log {self.path} is held by another process") from exc
            raise
        if created:
            os.fsync(fd)
            _fsync_dir(self.path.parent)
            if new_dir:
                _fsync_dir(self.path.parent.parent)
        return fd

    def _recover(self) -> None:
        """Verify the existing chain and rebuild seq, last hash, index and recent records from it."""
        result = verify_log(self.path, on_record=self._remember)
        if not result.ok:
            raise AuditChainError(
                f"audit log {self.path} is broken at line {result.line} (seq {result.seq}, "
                f"decision {result.decision_id}): {result.reason}. Refusing to append to a broken "
                "chain; inspect it with `facegate audit verify`, then move it aside to start a new log."
            )
        self._seq, self._last_hash = result.records, result.last_hash
        if result.records:
            log.info("audit log recovered", extra={"records": result.records, "last_hash": result.last_hash})

    def _remember(self, line: LogLine, record: Record) -> None:
        self._index[record["decision_id"]] = (line.offset, len(line.data))
        self._recent.append(record)

    # --- writing ------------------------------------------------------------------------------

    def append(self, body: Mapping[str, Any]) -> Record:
        """Chain, write and fsync one record; see ``AuditStore.append``."""
        body = dict(body)
        body.setdefault("time", utc_now_iso())
        with self._lock:
            if self._broken is not None:
                raise AuditWriteError(
                    f"audit log {self.path} is unusable after an earlier failure: {self._broken}"
                )
            if body.get("decision_id") in self._index:
                raise AuditFieldError("decision_id is already recorded; every record needs its own")
            record = chain(self._last_hash, body, self._seq + 1)
            data = encode_line(record)
            self._write(data)
            self._index[record["decision_id"]] = (self._size, len(data) - 1)
            self._size += len(data)
            self._seq, self._last_hash = record["seq"], record["hash"]
            self._recent.append(record)
        metrics.AUDIT_RECORDS.inc()
        return copy.deepcopy(record)

    def _write(self, data: bytes) -> None:
        """Append ``data`` and fsync; on failure cut the file back to its last good size and raise."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            metrics.AUDIT_WRITE_ERRORS.inc()
            self._roll_back()
            log.error("audit append failed", extra={"error": exc.strerror or type(exc).__name__})
            raise AuditWriteError(f"audit append to {self.path} failed: {exc.strerror or exc}") from exc

    def _roll_back(self) -> None:
        """Remove a torn, unacknowledged line so the next append continues a clean chain."""
        try:
            os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
        except OSError as exc:
            self._broken = f"could not roll back a failed append ({exc.strerror or exc})"
            log.error("audit log unusable: could not roll back a failed append")

    # --- reading ------------------------------------------------------------------------------

    def get(self, decision_id: str) -> Record | None:
        """Read the record from the file (checked against its hash: the file is the evidence)."""
        with self._lock:
            where = self._index.get(decision_id)
        if where is None:
            return None
        offset, length = where
        record = json.loads(os.pread(self._fd, length, offset))
        if record.get("decision_id") != decision_id or record.get("hash") != record_hash(record):
            raise AuditChainError(
                f"audit record at byte {offset} of {self.path} changed after it was written"
            )
        return record

    def recent(self, outcome: str | None = None, limit: int = 50) -> list[Record]:
        """Newest first, from the last ``recent_size`` records kept in memory."""
        with self._lock:
            records = list(self._recent)
        chosen = [r for r in reversed(records) if outcome is None or r.get("outcome") == outcome]
        return copy.deepcopy(chosen[: max(limit, 0)])

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record: worth logging at shutdown to anchor the chain elsewhere."""
        with self._lock:
            return self._seq, self._last_hash

    def close(self) -> None:
        """Close the file (releasing the writer lock); later appends fail with AuditWriteError."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                self._broken = "the store is closed"
