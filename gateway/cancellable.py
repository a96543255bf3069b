"""Downstream calls a streaming handler cancels when its client goes away.

A unary call's downstream work ends with it. A stream's kiosk can hang up while the gateway waits
on detection or docverify, and gRPC Python cancels nothing for it: the handler's blocking call
would run on to its deadline. So every downstream call a stream makes goes through one
:class:`Calls`: started as a future, registered while it runs, and cancelled by
:meth:`Calls.cancel_all`, which the stream calls from the RPC's termination callback. A call
started after that is cancelled at once. A cancelled call raises :class:`ClientGone`, a
``FacegateError``, so the kiosk path's fail-closed handling treats it like any failed stage and
the stream then stops before anything is recorded.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import grpc

from facegate.errors import FacegateError
from gateway.downstream import Downstream


class ClientGone(FacegateError):
    """The stream's client cancelled or disconnected: nothing more is worked on or recorded for it."""

    def __init__(self, message: str = "the client went away") -> None:
        super().__init__(message, grpc.StatusCode.CANCELLED)


class Calls:
    """The downstream calls of one stream that are still running; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[grpc.Future] = set()
        self.cancelled = False

    @contextmanager
    def tracking(self, future: grpc.Future) -> Iterator[grpc.Future]:
        """Register ``future`` while the block waits on it; ClientGone when it is (or was) cancelled."""
        with self._lock:
            if self.cancelled:
                future.cancel()
                raise ClientGone()
            self._open.add(future)
        try:
            yield future
        except grpc.FutureCancelledError:
            raise ClientGone() from None
        finally:
            with self._lock:
                self._open.discard(future)

    def run(self, method: Any, request: Any) -> Any:
        """``method(request)`` for a unary stub method, as a cancellable future."""
        with self.tracking(method.future(request)) as call:
            return call.result()

    def cancel_all(self) -> None:
        """Cancel every open call, and every later one as it starts."""
        with self._lock:
            self.cancelled = True
            running = list(self._open)
        for call in running:
            call.cancel()

    @property
    def open(self) -> int:
        with self._lock:
            return len(self._open)


class _Stub:
    """A stub whose unary methods run through :meth:`Calls.run`."""

    def __init__(self, stub: Any, calls: Calls) -> None:
        self._stub, self._calls = stub, calls

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        return partial(self._calls.run, getattr(self._stub, name))


def cancellable(down: Downstream, calls: Calls) -> Downstream:
    """A view of ``down`` whose docverify and watchlist calls go through ``calls``.

    It shares ``down``'s channels and pipeline and is never closed itself. Detection calls are
    made as futures by the stream and tracked there (:meth:`Calls.tracking`).
    """
    view = copy.copy(down)
    view.docverify = _Stub(down.docverify, calls)  # type: ignore[assignment]
    view.watchlist = _Stub(down.watchlist, calls)  # type: ignore[assignment]
    return view
