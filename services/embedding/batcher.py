"""Dynamic batching: concurrent requests share one compiled model call.

A model call on 32 faces costs far less than 32 calls on one face, so a worker thread
collects rows from every waiting request until it holds ``max_batch`` faces or ``max_wait``
has passed since the first one arrived, runs the model once, and hands each request back
exactly its own rows (a request larger than the batch is split across calls in order).
With ``max_wait`` 0 (the default on a CPU, where batching saves little per face) the worker
never waits: it runs what has queued, and what arrives during a call goes into the next one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from services.embedding import metrics
from services.runtime.errors import Unavailable

EmbedFn = Callable[[np.ndarray], np.ndarray]


class _Job:
    """One caller's crops, filled in place as model calls complete."""

    __slots__ = ("crops", "done_rows", "enqueued", "future", "next_row", "out")

    def __init__(self, crops: np.ndarray, dimension: int) -> None:
        self.crops = crops
        self.out = np.empty((len(crops), dimension), np.float32)
        self.next_row = 0  # first row not yet handed to a model call
        self.done_rows = 0
        self.future: Future[np.ndarray] = Future()
        self.enqueued = time.perf_counter()


class DynamicBatcher:
    def __init__(self, embed: EmbedFn, *, dimension: int, max_batch: int, max_wait_s: float) -> None:
        self._embed = embed
        self._dimension = dimension
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._carry: _Job | None = None  # a job only partly taken by the previous call
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedding-batcher", daemon=True)
        self._thread.start()

    def submit(self, crops: np.ndarray) -> Future[np.ndarray]:
        """Queue N crops; the future resolves to their N embeddings in the same order."""
        job = _Job(crops, self._dimension)
        if self._stopped.is_set():
            job.future.set_exception(Unavailable("embedding service is shutting down"))
            return job.future
        if len(crops) == 0:
            job.future.set_result(job.out)
            return job.future
        self._queue.put(job)
        return job.future

    def embed(self, crops: np.ndarray, timeout: float | None = None) -> np.ndarray:
        return self.submit(crops).result(timeout)

    def close(self) -> None:
        self._stopped.set()
        self._queue.put(None)
        self._thread.join(timeout=10)
        while True:  # anything still queued will never run: tell its caller
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and not job.future.done():
                job.future.set_exception(Unavailable("embedding service is shutting down"))

    def _next_job(self, timeout: float | None) -> _Job | None:
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _run(self) -> None:
        while not self._stopped.is_set():
            first = self._next_job(timeout=None)
            if first is None:
                continue  # the close() sentinel, or nothing yet
            taken: list[tuple[_Job, int, int]] = []  # job, first row, row count
            size = 0
            deadline = time.perf_counter() + self.max_wait_s
            job: _Job | None = first
            while job is not None:
                count = min(len(job.crops) - job.next_row, self.max_batch - size)
                taken.append((job, job.next_row, count))
                job.next_row += count
                size += count
                if job.next_row < len(job.crops):
                    self._carry = job  # the rest goes into the next call, ahead of newer jobs
                    break
                if size >= self.max_batch:
                    break
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        job = None
                else:
                    job = self._next_job(timeout=remaining)
            self._run_batch(taken, size)

    def _run_batch(self, taken: list[tuple[_Job, int, int]], size: int) -> None:
        started = time.perf_counter()
        for job, start, _count in taken:
            if start == 0:
                metrics.QUEUE_WAIT.observe(started - job.enqueued)
        try:
            if len(taken) == 1:
                job, start, count = taken[0]
                batch = job.crops[start : start + count]
            else:
                batch = np.concatenate([job.crops[s : s + c] for job, s, c in taken], axis=0)
            rows = self._embed(batch)
        except Exception as exc:
            for job, _start, _count in taken:
                if not job.future.done():
                    job.future.set_exception(exc)
                if self._carry is job:
                    self._carry = None
            return
        metrics.BATCH_SIZE.observe(size)
        metrics.MODEL_SECONDS.observe(time.perf_counter() - started)
        offset = 0
        for job, start, count in taken:
            job.out[start : start + count] = rows[offset : offset + count]
            offset += count
            job.done_rows += count
            if job.done_rows == len(job.crops) and not job.future.done():
                job.future.set_result(job.out)
