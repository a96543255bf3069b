"""A bounded number of holders, served strictly in arrival order.

Why not ``threading.BoundedSemaphore``: when a holder releases, CPython's semaphore wakes the oldest
waiter, but a thread arriving in that instant may take the slot first; the woken waiter then finds
none and waits again at the back of the queue. Under load (more kiosks than cores) some calls keep
losing that race and wait several turns, which is what a gate's p99 is made of. Here a released slot
is handed to the oldest waiter directly, so nobody can overtake.

A waiter may give up (``acquire(timeout)``): a call whose deadline passes in the queue leaves it
without running, so an overloaded service does not spend its cores on answers nobody waits for.
"""

from __future__ import annotations

import threading
from collections import deque


class FifoSlots:
    """At most ``n`` holders at once (``with slots:``); the others wait their turn, first come first served."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"need at least one slot, got {n}")
        self._lock = threading.Lock()
        self._n = self._free = n
        self._waiters: deque[threading.Lock] = deque()

    def waiting(self) -> int:
        """Callers queued for a slot now."""
        with self._lock:
            return len(self._waiters)

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot, waiting at most ``timeout`` seconds (None: as long as it takes); False when
        the time ran out first, having left the queue."""
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        if turn.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            return True  # released by the holder that handed its slot over
        with self._lock:
            if turn in self._waiters:
                self._waiters.remove(turn)
                return False
        self.release()  # handed over just as the time ran out: pass it on
        return False

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()  # the slot passes on without ever being free
            elif self._free < self._n:
                self._free += 1
            else:  # as BoundedSemaphore: a release without an acquire would add a slot for good
                raise ValueError("released more slots than were taken")

    def __enter__(self) -> FifoSlots:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
