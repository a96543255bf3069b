"""Gateway messages as the JSON the pages read (proto field names, enum names, bytes as base64)."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message


def as_json(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def referral_row(record: Message) -> dict[str, Any]:
    """What the queue shows of one referral: no images (those come with the referral itself)."""
    out = as_json(record)
    decision = out.get("decision", {})
    return {
        "decision_id": decision.get("decision_id", ""),
        "decided_at": decision.get("decided_at", ""),
        "gate_id": out.get("gate_id", ""),
        "reasons": decision.get("reasons", []),
        "scores": decision.get("scores", []),
        "candidates": out.get("candidates", []),
        "model_version": decision.get("model_version", ""),
    }
