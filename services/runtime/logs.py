"""Structured JSON logs with request ids.

Privacy rule: log calls carry ids, codes, counts and timings only. Nothing here accepts image
bytes or personal names, and callers must not put them into messages or ``extra`` fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time

# The request id lives in the client layer's call context, so the id a server logs is the id its
# own downstream calls forward.
from facegate.context import new_request_id, request_id_var

__all__ = ["JsonFormatter", "new_request_id", "request_id_var", "setup_logging"]

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: easy for Loki/ELK, impossible to confuse with free text."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            # Exception type only: messages and tracebacks can carry request data.
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(entry, default=str)


def setup_logging(service: str, level: str = "INFO") -> None:
    """Route the root logger to stderr as JSON; idempotent so tests can call it repeatedly."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_facegate", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler._facegate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
