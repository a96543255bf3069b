"""Decisions as audit records, and audit records back as ``AuditRecord`` messages.

A record holds what an auditor needs (time, decision id, request id, caller key id and role, gate,
operation, watchlists consulted, outcome, reasons, scores with thresholds, model version, per-stage
timings) and nothing a record must not hold: no image bytes, names or keys. ``facegate.audit``
enforces that with an allow-list of fields.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from facegate.audit import MAX_ID_CHARS, utc_now_iso
from facegate.context import current_request_id
from facegate.errors import InvalidArgument
from facegate.v1 import common_pb2, gateway_pb2, watchlist_pb2
from gateway.auth import current_caller

R = common_pb2.ReasonCode
OUT = common_pb2.Outcome


def check_ids(what: str, values: Iterable[str]) -> None:
    """Refuse (INVALID_ARGUMENT) an id the caller gives that the audit record could not hold: a
    decision must not be computed and then fail to be recorded for a field the caller got wrong."""
    for value in values:
        if len(value) > MAX_ID_CHARS:
            raise InvalidArgument(f"{what} is {len(value)} characters; the limit is {MAX_ID_CHARS}")


def new_decision_id() -> str:
    return uuid.uuid4().hex


def reason_name(code: int) -> str:
    return R.Name(code).removeprefix("REASON_CODE_") if code in R.values() else str(code)


def outcome_name(outcome: int) -> str:
    return OUT.Name(outcome).removeprefix("OUTCOME_")


def stamp(decision: common_pb2.Decision, timings: Mapping[str, float] | None = None) -> common_pb2.Decision:
    """Give ``decision`` its id, time and request id (and timings); returns it."""
    decision.decision_id = decision.decision_id or new_decision_id()
    decision.decided_at.GetCurrentTime()
    decision.request_id = current_request_id()
    for stage, ms in (timings or {}).items():
        decision.timings.add(stage=stage, milliseconds=ms)
    return decision


def caller_fields() -> dict[str, str]:
    caller = current_caller()
    return {"caller": caller.key_id if caller else "", "role": caller.role if caller else ""}


def decision_body(
    operation: str,
    decision: common_pb2.Decision,
    *,
    gate_id: str = "",
    watchlists: Sequence[str] = (),
    candidates: Iterable[watchlist_pb2.Candidate] = (),
) -> dict[str, Any]:
    """The audit body of a stamped decision (see :func:`stamp`)."""
    body: dict[str, Any] = {
        "decision_id": decision.decision_id,
        "time": utc_now_iso(),
        "request_id": decision.request_id,
        **caller_fields(),
        "operation": operation,
        "outcome": outcome_name(decision.outcome),
        "reasons": [{"code": reason_name(r.code), "message": r.message} for r in decision.reasons],
        "scores": [_score(s) for s in decision.scores],
        "model_version": decision.model_version,
        "watchlists": list(watchlists),
        "candidates": [
            {"watchlist": c.watchlist, "subject_id": c.subject_id, "score": c.score} for c in candidates
        ],
        "timings_ms": {t.stage: t.milliseconds for t in decision.timings},
    }
    if gate_id:
        body["gate_id"] = gate_id
    return body


def _score(score: common_pb2.Score) -> dict[str, Any]:
    """A score as the audit keeps it; a 1:1 score also names the calibration that set its threshold."""
    out = {
        "name": score.name,
        "value": score.value,
        "threshold": score.threshold,
        "target_far": score.target_far,
    }
    if score.calibration:
        out.update(calibration=score.calibration, measured_far=score.measured_far)
    return out


def action_body(
    operation: str,
    outcome: str,
    *,
    watchlist: str = "",
    subject_id: str = "",
    reasons: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The audit body of an admin action or a refused call (no decision: outcome is OK or a code)."""
    body: dict[str, Any] = {
        "decision_id": new_decision_id(),
        "time": utc_now_iso(),
        "request_id": current_request_id(),
        **caller_fields(),
        "operation": operation,
        "outcome": outcome,
        "reasons": [{"code": code, "message": message} for code, message in reasons],
    }
    # What the caller named, cut to the audit's id limit: a longer name can be no list or subject
    # (the watchlist service refuses it), and the refusal must still be recorded, not fail the call.
    if watchlist:
        body["watchlists"] = [watchlist[:MAX_ID_CHARS]]
    if subject_id:
        body["subject_id"] = subject_id[:MAX_ID_CHARS]
    return body


def _timestamp(iso: str) -> Timestamp:
    ts = Timestamp()
    if iso:
        ts.FromDatetime(datetime.fromisoformat(iso.replace("Z", "+00:00")))
    return ts


def _enum_value(enum: Any, name: str) -> int:
    """The value of enum member ``name``; 0 (UNSPECIFIED) for a name this build does not know."""
    try:
        return enum.Value(name)
    except ValueError:
        return 0


def to_audit_record(record: Mapping[str, Any]) -> gateway_pb2.AuditRecord:
    """An ``AuditRecord`` message from a stored record (unknown reason names become UNSPECIFIED)."""
    decision = common_pb2.Decision(
        decision_id=record["decision_id"],
        outcome=_enum_value(OUT, f"OUTCOME_{record.get('outcome', '')}"),
        reasons=[
            common_pb2.Reason(code=_enum_value(R, f"REASON_CODE_{r['code']}"), message=r["message"])
            for r in record.get("reasons", [])
        ],
        scores=[common_pb2.Score(**s) for s in record.get("scores", [])],
        model_version=record.get("model_version", ""),
        decided_at=_timestamp(record.get("time", "")),
        request_id=record.get("request_id", ""),
        timings=[
            common_pb2.StageTiming(stage=k, milliseconds=v) for k, v in record.get("timings_ms", {}).items()
        ],
    )
    return gateway_pb2.AuditRecord(
        decision=decision,
        method=record.get("operation", ""),
        caller=record.get("caller", ""),
        role=record.get("role", ""),
        gate_id=record.get("gate_id", ""),
        request_id=record.get("request_id", ""),
        watchlists=record.get("watchlists", []),
        subject_id=record.get("subject_id", ""),
        candidates=[watchlist_pb2.Candidate(**c) for c in record.get("candidates", [])],
        refers_to=record.get("refers_to", ""),
    )
