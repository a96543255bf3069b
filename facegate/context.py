"""The call context that crosses every hop: the request id and the caller's deadline.

A request id sent by a kiosk must appear in the log lines of every service the request touched,
and a downstream call must never outlive the caller that is waiting for it. Both travel here:
the server runtime sets them for the duration of each RPC it handles, and the client channels
(``facegate.client``) read them for every outgoing call. Plain callers (the SDK, the CLI) can set
them too with :func:`call_context`.

Context variables follow the thread that set them. Work handed to a thread pool must carry the
context explicitly: use :func:`submit`.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

REQUEST_ID_HEADER = "x-request-id"
#: Longest request id accepted from a caller; longer ones are cut (they go into every log line).
MAX_REQUEST_ID = 64

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("facegate_request_id", default="")
#: time.monotonic() by which the caller wants an answer; None = no deadline.
deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar("facegate_deadline", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str:
    return request_id_var.get()


def remaining_s() -> float | None:
    """Seconds left before the caller's deadline (may be <= 0), or None when there is none."""
    deadline = deadline_var.get()
    return None if deadline is None else deadline - time.monotonic()


@contextlib.contextmanager
def call_context(request_id: str | None = None, timeout_s: float | None = None) -> Iterator[str]:
    """Run the block under a request id (a new one when not given) and, optionally, a deadline.

    A deadline set here can only shorten one that is already in force, never extend it.
    Yields the request id.
    """
    rid = (request_id or current_request_id() or new_request_id())[:MAX_REQUEST_ID]
    deadline = deadline_var.get()
    if timeout_s is not None:
        mine = time.monotonic() + timeout_s
        deadline = mine if deadline is None else min(deadline, mine)
    rid_token = request_id_var.set(rid)
    deadline_token = deadline_var.set(deadline)
    try:
        yield rid
    finally:
        deadline_var.reset(deadline_token)
        request_id_var.reset(rid_token)


def submit(pool: Executor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
    """``pool.submit`` that runs ``fn`` in a copy of the caller's context (request id, deadline)."""
    ctx = contextvars.copy_context()
    return pool.submit(ctx.run, fn, *args, **kwargs)
