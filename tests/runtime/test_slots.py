"""FifoSlots: at most n holders, and waiters served in arrival order with no overtaking."""

from __future__ import annotations

import threading
import time

import pytest

from services.runtime.slots import FifoSlots


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_waiters_get_the_slot_in_the_order_they_came() -> None:
    slots, order = FifoSlots(1), []

    def take(i: int) -> None:
        with slots:
            order.append(i)

    threads = []
    with slots:
        for i in range(5):
            threads.append(threading.Thread(target=take, args=(i,)))
            threads[-1].start()
            wait_for(lambda i=i: slots.waiting() == i + 1)
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_released_slot_goes_to_the_waiter_not_to_a_newcomer() -> None:
    """The holder releases and asks again at once: the waiter that was queued goes first (a
    threading.Semaphore lets the newcomer take the slot before the woken waiter runs)."""
    slots, order = FifoSlots(1), []

    def waiter() -> None:
        with slots:
            order.append("waiter")

    slots.__enter__()
    t = threading.Thread(target=waiter)
    t.start()
    wait_for(lambda: slots.waiting() == 1)
    slots.__exit__()
    with slots:
        order.append("newcomer")
    t.join(5)
    assert order == ["waiter", "newcomer"]


def test_never_more_holders_than_slots() -> None:
    slots, lock = FifoSlots(2), threading.Lock()
    holding, most = [0], [0]

    def work() -> None:
        with slots:
            with lock:
                holding[0] += 1
                most[0] = max(most[0], holding[0])
            time.sleep(0.01)
            with lock:
                holding[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert most[0] == 2 and holding[0] == 0 and slots.waiting() == 0


def test_a_waiter_that_gives_up_leaves_the_queue_and_loses_no_slot() -> None:
    slots, order = FifoSlots(1), []
    assert slots.acquire()
    assert not slots.acquire(timeout=0)  # busy: no wait at all
    assert not slots.acquire(timeout=0.05)  # waited, then left
    assert slots.waiting() == 0

    def patient() -> None:
        with slots:
            order.append("patient")

    t = threading.Thread(target=patient)
    t.start()
    wait_for(lambda: slots.waiting() == 1)
    slots.release()  # to the patient waiter, not to the one that left
    t.join(5)
    assert order == ["patient"]
    assert slots.acquire(timeout=0)  # and back: one slot, free again
    slots.release()


def test_no_slots_is_a_configuration_error_and_a_slot_is_released_once() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        FifoSlots(0)
    slots = FifoSlots(1)
    with slots:
        pass
    with pytest.raises(ValueError, match="released more slots than were taken"):
        slots.release()
