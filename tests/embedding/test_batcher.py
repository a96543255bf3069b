"""Dynamic batching on the real model: merged calls, and every caller gets its own rows back."""

from __future__ import annotations

import threading

import numpy as np

from services.embedding.batcher import DynamicBatcher


class CountingModel:
    """The real model, with a record of the batch sizes it was called with."""

    def __init__(self, model):
        self.model = model
        self.calls: list[int] = []

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        self.calls.append(len(crops))
        return self.model.embed(crops)


def test_concurrent_callers_are_merged_and_get_their_own_rows(model, distinct_crops):
    callers = 6
    crops = [np.stack(distinct_crops[2 * i : 2 * i + 2]) for i in range(callers)]  # 2 different faces each
    reference = [model.embed(c) for c in crops]
    counting = CountingModel(model)
    # The batch closes when all 12 rows are in (max_batch reached), long before the wait runs out.
    batcher = DynamicBatcher(counting, dimension=128, max_batch=2 * callers, max_wait_s=30.0)
    barrier = threading.Barrier(callers)
    results: list[np.ndarray | None] = [None] * callers

    def call(i: int) -> None:
        barrier.wait()
        results[i] = batcher.embed(crops[i], timeout=60)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert counting.calls == [2 * callers]
    for i in range(callers):
        got = results[i]
        assert got is not None and got.shape == (2, 128)
        assert np.allclose(got, reference[i], atol=1e-4)
        # and each row is nearest to its own reference among all callers' rows
        everyone = np.concatenate(reference)
        assert np.argmax(everyone @ got[0]) == 2 * i and np.argmax(everyone @ got[1]) == 2 * i + 1


def test_a_request_larger_than_the_batch_is_split_in_order(model, distinct_crops):
    crops = np.stack(distinct_crops[:7])
    counting = CountingModel(model)
    batcher = DynamicBatcher(counting, dimension=128, max_batch=3, max_wait_s=0.0)
    got = batcher.embed(crops, timeout=60)
    batcher.close()
    assert counting.calls == [3, 3, 1]
    assert np.allclose(got, model.embed(crops), atol=1e-4)


def test_a_failing_model_call_fails_only_its_callers(model, distinct_crops):
    def broken(crops: np.ndarray) -> np.ndarray:
        raise ValueError("boom")

    batcher = DynamicBatcher(broken, dimension=128, max_batch=4, max_wait_s=0.0)
    future = batcher.submit(np.stack(distinct_crops[:2]))
    try:
        future.result(timeout=60)
    except ValueError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("expected the model error")
    batcher.close()


def test_without_a_wait_requests_that_queue_during_a_call_share_the_next(model, distinct_crops):
    """max_wait 0 (the CPU default): a lone request runs at once, and load still batches."""
    running, release = threading.Event(), threading.Event()
    counting = CountingModel(model)

    def first_call_blocks(crops: np.ndarray) -> np.ndarray:
        if not counting.calls:
            running.set()
            release.wait(60)
        return counting(crops)

    batcher = DynamicBatcher(first_call_blocks, dimension=128, max_batch=32, max_wait_s=0.0)
    try:
        lone = batcher.submit(np.stack(distinct_crops[:1]))
        assert running.wait(60)  # taken without waiting for company
        queued = [batcher.submit(np.stack(distinct_crops[i : i + 1])) for i in (1, 2, 3)]
        release.set()
        rows = [lone.result(60)] + [f.result(60) for f in queued]
    finally:
        release.set()
        batcher.close()
    assert counting.calls == [1, 3]
    assert np.allclose(np.concatenate(rows), model.embed(np.stack(distinct_crops[:4])), atol=1e-4)
