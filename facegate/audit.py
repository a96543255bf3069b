"""The audit trail's record format: hash-chained JSON lines, and the checks that prove a log intact.

Why: EU AI Act art. 12(3) asks remote biometric identification systems to log every use
(period, reference database, input data that matched, the people who verified it), and EES
art. 46 asks for a record of every data operation. An auditor must be able to trust that the
log was not edited afterwards, so each record carries the SHA-256 of the record before it:
editing, deleting or reordering any record breaks the chain at that record, and ``verify_log``
names it. (A chain proves integrity only up to its last hash: publish or anchor that hash
elsewhere, e.g. in the ops log, to detect a rewrite of the whole tail.)

Format: one record per line, UTF-8 JSON in canonical form (sorted keys, compact separators).
Every record has ``seq`` (1, 2, ... so a missing or moved record is named precisely),
``prev_hash`` (the previous record's ``hash``; ``GENESIS_HASH`` for the first) and ``hash``
(``record_hash`` of the record itself, i.e. SHA-256 of its canonical form without ``hash``).

Privacy: a record body is built from an allow-list of fields with checked types and bounded
string lengths (``validate_body``): no image bytes, names or keys can get in by accident, and
an unknown field is an error, not silently stored.

This module is pure stdlib: the CLI verifies logs without the gateway's dependencies.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first record: a fixed value, so a log cannot start mid-chain unnoticed."""

CHAIN_FIELDS = ("seq", "prev_hash", "hash")
REQUIRED_FIELDS = ("decision_id", "time", "operation", "outcome")

MAX_ID_CHARS = 200
"""Ids, codes and names of things: long enough for any id, far too short for an image."""
MAX_TEXT_CHARS = 1000
"""Reason messages: one sentence for an officer, never a payload."""

# Allow-list of body fields. Each value: (kind, max string length) where kind is one of
# "str", "str_list", "reasons", "scores", "candidates", "timings".
_TOP_FIELDS: dict[str, str] = {
    "time": "str",  # UTC ISO 8601, e.g. 2025-01-31T09:15:02.123456Z
    "decision_id": "str",  # unique per record; the key of GetAuditRecord
    "request_id": "str",  # the x-request-id the caller sent or was given
    "caller": "str",  # API key *id* (never the key)
    "role": "str",  # kiosk | officer | admin | ops (or "" when unauthenticated)
    "gate_id": "str",
    "operation": "str",  # RPC name, e.g. VerifyTraveller
    "watchlists": "str_list",  # watchlists consulted
    "outcome": "str",  # ACCEPT | RETRY | REFER, or an admin action's result
    "reasons": "reasons",  # [{"code": "NO_MATCH", "message": "..."}]
    "scores": "scores",  # [{"name", "value", "threshold", "target_far"[, "calibration", "measured_far"]}]
    "model_version": "str",
    "subject_id": "str",  # the subject an admin action touched (an id, never a name)
    "candidates": "candidates",  # watchlist hits for officers: [{"watchlist", "subject_id", "score"}]
    "timings_ms": "timings",  # per-stage wall time, {"detect": 112.0, ...}
    "refers_to": "str",  # the decision an officer action acts on (a referral's outcome, a hit confirmation)
}
_ITEM_FIELDS: dict[str, dict[str, str]] = {
    "reasons": {"code": "str", "message": "text"},
    # calibration / measured_far: which portrait source and size band set a 1:1 threshold, and its FAR there.
    "scores": {
        "name": "str",
        "value": "num",
        "threshold": "num",
        "target_far": "num",
        "calibration": "str",
        "measured_far": "num",
    },
    "candidates": {"watchlist": "str", "subject_id": "str", "score": "num"},
}


class AuditFieldError(ValueError):
    """A body field is not on the allow-list or has the wrong type/size. Names the field, never its value."""


class AuditFormatError(ValueError):
    """A log line is not a well-formed record (raised by ``read_records``)."""


# --- canonical form and hashing ---------------------------------------------------------------


def canonical(record: Mapping[str, Any]) -> bytes:
    """The one byte form of a record that hashes and log lines use (stable across processes)."""
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the record's canonical form without its own ``hash`` field."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with microseconds and a Z (sorts as text, no time zone doubt)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- body validation (the privacy allow-list) ---------------------------------------------------


def _check_str(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise AuditFieldError(f"audit field {name!r} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise AuditFieldError(f"audit field {name!r} is {len(value)} characters; the limit is {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AuditFieldError(f"audit field {name!r} is not encodable as UTF-8") from exc
    return value


def _check_num(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuditFieldError(f"audit field {name!r} must be a finite number")
    return float(value)


def _check_items(name: str, value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list | tuple):
        raise AuditFieldError(f"audit field {name!r} must be a list")
    spec = _ITEM_FIELDS[name]
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise AuditFieldError(f"audit field {name}[{i}] must be an object")
        unknown = sorted(set(item) - set(spec))
        if unknown:
            raise AuditFieldError(f"audit field {name}[{i}] has fields not on the allow-list: {unknown}")
        out.append({key: _check_value(f"{name}[{i}].{key}", spec[key], v) for key, v in item.items()})
    return out


def _check_value(name: str, kind: str, value: object) -> Any:
    if kind == "str":
        return _check_str(name, value, MAX_ID_CHARS)
    if kind == "text":
        return _check_str(name, value, MAX_TEXT_CHARS)
    if kind == "num":
        return _check_num(name, value)
    if kind == "str_list":
        if not isinstance(value, list | tuple):
            raise AuditFieldError(f"audit field {name!r} must be a list of strings")
        return [_check_str(f"{name}[{i}]", v, MAX_ID_CHARS) for i, v in enumerate(value)]
    if kind == "timings":
        if not isinstance(value, Mapping):
            raise AuditFieldError(f"audit field {name!r} must be an object of stage -> milliseconds")
        return {
            _check_str(f"{name} key", k, MAX_ID_CHARS): _check_num(f"{name}.{k}", v) for k, v in value.items()
        }
    return _check_items(name, value)


def validate_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A clean copy of ``body`` containing only allow-listed, well-typed fields.

    Raises AuditFieldError for an unknown field (``image``, ``api_key``, ``display_name``, ...), a
    wrong type, an oversized string or a missing required field: better a loud failure in a test
    than personal data in a log that must be kept for years.
    """
    unknown = sorted(set(body) - set(_TOP_FIELDS))
    if unknown:
        raise AuditFieldError(f"audit body has fields not on the allow-list: {unknown}")
    clean = {name: _check_value(name, _TOP_FIELDS[name], value) for name, value in body.items()}
    for name in REQUIRED_FIELDS:
        if not clean.get(name):
            raise AuditFieldError(f"audit body lacks required field {name!r}")
    return clean


def chain(prev_hash: str, body: Mapping[str, Any], seq: int) -> dict[str, Any]:
    """The record that follows the one whose hash is ``prev_hash``: validated body + seq + hashes."""
    if seq < 1:
        raise ValueError("seq starts at 1")
    record: dict[str, Any] = {**validate_body(body), "seq": seq, "prev_hash": prev_hash}
    record["hash"] = record_hash(record)
    return record


def encode_line(record: Mapping[str, Any]) -> bytes:
    """The log line of a record: its canonical form plus a newline (a line is complete or broken)."""
    return canonical(record) + b"\n"


# --- reading and verifying ----------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify_log``: ok, or the first broken record (1-based line) and why."""

    ok: bool
    records: int  # records verified intact (before the broken one, if any)
    last_hash: str  # hash of the last intact record (GENESIS_HASH for an empty log)
    line: int | None = None
    seq: int | None = None
    decision_id: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LogLine:
    """One raw line of a log with where it sits (offsets let a store index records cheaply)."""

    number: int  # 1-based
    offset: int  # byte offset of the line in the file
    data: bytes  # without the newline
    terminated: bool  # False for a last line with no newline: an append that was cut off


def iter_lines(path: str | Path) -> Iterator[LogLine]:
    """Every line of a log, in order, without loading the whole file."""
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            terminated = raw.endswith(b"\n")
            yield LogLine(number, offset, raw[:-1] if terminated else raw, terminated)
            offset += len(raw)


def parse_line(line: LogLine) -> dict[str, Any]:
    """The record on a line, or AuditFormatError saying precisely what is wrong with it."""
    if not line.terminated:
        raise AuditFormatError("last line is not terminated: an append was cut off (truncated record)")
    if not line.data.strip():
        raise AuditFormatError("empty line where a record should be")
    try:
        record = json.loads(line.data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise AuditFormatError("not valid UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise AuditFormatError(f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise AuditFormatError("not a JSON object")
    missing = [name for name in (*CHAIN_FIELDS, "decision_id") if name not in record]
    if missing:
        raise AuditFormatError(f"missing field(s) {missing}")
    if not isinstance(record["seq"], int) or isinstance(record["seq"], bool):
        raise AuditFormatError("seq is not an integer")
    return record


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every record of a log in order (parsed only, not verified: use ``verify_log`` for that)."""
    for line in iter_lines(path):
        try:
            yield parse_line(line)
        except AuditFormatError as exc:
            raise AuditFormatError(f"{path}: line {line.number}: {exc}") from exc


def find_record(path: str | Path, decision_id: str) -> dict[str, Any] | None:
    """The record with this decision id (the last one, should a broken log hold several), or None."""
    found = None
    for record in read_records(path):
        if record.get("decision_id") == decision_id:
            found = record
    return found


def _sequence_break(path: str | Path, expected: int, seen: int, line: int) -> str:
    """Why record seq ``seen`` stands where ``expected`` should: was ``expected`` deleted or moved?"""
    if seen < expected:
        return f"seq {seen} where {expected} was expected: a record was duplicated or reordered"
    for later in iter_lines(path):
        if later.number <= line:
            continue
        try:
            if parse_line(later).get("seq") == expected:
                return (
                    f"seq {seen} where {expected} was expected; seq {expected} is at line "
                    f"{later.number}: records were reordered"
                )
        except AuditFormatError:
            continue
    return f"seq {seen} where {expected} was expected: record(s) {expected}..{seen - 1} were deleted"


def _check_record(path: str | Path, line: LogLine, prev_hash: str, expected_seq: int) -> dict[str, Any]:
    """The record on ``line`` if it is intact and in its place, else AuditFormatError with why."""
    record = parse_line(line)
    if record["hash"] != record_hash(record):
        raise AuditFormatError("hash mismatch: record was edited")
    if line.data != canonical(record):
        # Same parsed content, different bytes (spacing, key order, a duplicated key that a
        # first-wins JSON reader would show instead): also an edit.
        raise AuditFormatError("line is not in canonical form: record was edited")
    if record["seq"] != expected_seq:
        raise AuditFormatError(_sequence_break(path, expected_seq, record["seq"], line.number))
    if record["prev_hash"] != prev_hash:
        raise AuditFormatError(
            "prev_hash does not match the record before: a record was deleted, replaced or reordered"
        )
    return record


def _broken_ids(line: LogLine) -> tuple[int | None, str | None]:
    """Best-effort seq and decision id of a broken line, so the report can name it."""
    try:
        record = json.loads(line.data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, None
    if not isinstance(record, dict):
        return None, None
    seq = record.get("seq") if isinstance(record.get("seq"), int) else None
    did = record.get("decision_id") if isinstance(record.get("decision_id"), str) else None
    return seq, did


OnRecord = Callable[[LogLine, dict[str, Any]], None]


def verify_log(path: str | Path, on_record: OnRecord | None = None) -> VerifyResult:
    """Check every record's hash, seq and link to the one before; stop at the first broken one.

    ``on_record(line, record)`` is called for each intact record in order (a store uses it to
    rebuild its index while verifying, in one pass). A missing file raises FileNotFoundError:
    "no log" is not the same finding as "a broken log".
    """
    prev_hash, count = GENESIS_HASH, 0
    for line in iter_lines(path):
        try:
            record = _check_record(path, line, prev_hash, count + 1)
        except AuditFormatError as exc:
            seq, did = _broken_ids(line)
            return VerifyResult(False, count, prev_hash, line.number, seq, did, str(exc))
        if on_record is not None:
            on_record(line, record)
        prev_hash, count = record["hash"], count + 1
    return VerifyResult(True, count, prev_hash)


def default_log_path() -> Path:
    """Where ``make run``'s gateway writes its audit log: $FACEGATE_VAR_DIR (default var)/audit/audit.log."""
    return Path(os.environ.get("FACEGATE_VAR_DIR", "var")) / "audit" / "audit.log"
