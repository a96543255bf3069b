"""VerifyTravellerStream: the gate decision from the camera's stream instead of one photo.

The kiosk sends a start (the VerifyTravellerRequest without a live capture), then frames as the
traveller steps in. The gateway scores each frame (``gateway.frame_quality``), answers one
feedback message per scored frame, and stops capturing at the first acceptable frame, after
``max_frames`` scored frames, when the time budget (counted from the first frame) runs out, or
when the kiosk closes its side. The best frame then goes through VerifyTraveller's own path
(``GatewayService._decide_gate``: the same checks, decision function, audit record, retry cache
and referral hold), and the stream ends with that decision, the chosen frame and its quality.

**Skip-to-latest.** A reader thread takes every message off the stream as it arrives and keeps
only the newest unscored frame (:class:`LatestFrame`): a frame that a newer one replaces before
it was scored is skipped and counted. Whatever the camera's rate, a stream holds at most three
frames (the one waiting, the one being scored, the best so far), and the kiosk is never slowed
by flow control: what it is shown always concerns a recent frame. Scoring runs one frame at a
time, so a camera faster than detection costs the gateway no more than a slow one.

**A kiosk that goes away** (cancel, disconnect, deadline) leaves nothing behind: the RPC's
termination callback wakes the capture loop and cancels every downstream call still open
(``gateway.cancellable``), the reader thread ends with the RPC, and the decision is not recorded
when the client is gone by the time it would be: no audit record, no retry-cache entry.

Failures: a malformed stream (no start first, a second start, a live capture in the start, an
empty frame) or a frame detection refuses ends the stream with INVALID_ARGUMENT (or
RESOURCE_EXHAUSTED) naming it, and nothing is decided, like a bad VerifyTraveller request. No
frame at all is INVALID_ARGUMENT (stream closed) or DEADLINE_EXCEEDED (budget spent). Detection
not answering stops the capture: the latest frame is decided on through the verification path,
which fails closed (REFER) when the services are still down.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from facegate.context import remaining_s
from facegate.errors import DeadlineExceeded, FacegateError, InvalidArgument, ServiceFailure
from facegate.v1 import gateway_pb2
from gateway import frame_quality, kiosk, metrics
from gateway.cancellable import Calls, ClientGone, cancellable
from gateway.config import GatewaySettings
from gateway.downstream import Downstream, Timings
from gateway.frame_quality import Frame, ScoredFrame

STOP = gateway_pb2.CaptureStop
#: The shortest capture a kiosk may ask for: a shorter window holds no frame of any camera (and a
#: budget that ends before the stream's own end is read would answer DEADLINE_EXCEEDED at random).
MIN_TIME_BUDGET_S = 0.5
READER_THREAD = "gateway-stream-reader"


@dataclass(frozen=True)
class Limits:
    """The caps of one capture: the gateway's, or less when the kiosk asked for less."""

    max_frames: int
    budget_s: float

    @classmethod
    def of(cls, settings: GatewaySettings, start: gateway_pb2.StreamStart) -> Limits:
        frames, budget = settings.stream_max_frames, settings.stream_time_budget_s
        if start.max_frames:
            frames = min(frames, start.max_frames)
        if start.time_budget_s > 0:
            budget = min(budget, start.time_budget_s)
        return cls(frames, budget)


class LatestFrame:
    """What the reader thread hands the capture loop: the start, then only the newest unscored frame."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.start: gateway_pb2.StreamStart | None = None
        self._frame: Frame | None = None
        self.error: FacegateError | None = None
        self.ended = False  # the kiosk closed its side (or the stream is broken: see error/gone)
        self.closed = False  # capture is over: later frames are read and dropped, not counted
        self.gone = False  # the RPC is over: cancelled, disconnected, or answered
        self.received = 0
        self.skipped = 0
        self.first_at: float | None = None

    def put(self, message: gateway_pb2.VerifyTravellerStreamRequest) -> bool:
        """Take one message off the stream; False when the stream must be read no further."""
        kind = message.WhichOneof("item")
        with self._cond:
            if self.gone or self.error is not None:
                return False
            if self.start is None or kind != "frame":
                return self._put_start(message, kind)
            if self.closed:
                return True
            if not message.frame.image.data:
                return self._fail(InvalidArgument(f"frame {self.received}: the image is empty"))
            now = time.monotonic()
            if self._frame is not None:
                self.skipped += 1
                metrics.STREAM_FRAMES.labels("skipped").inc()
            self._frame = Frame(self.received, message.frame.image, message.frame.captured_at, now)
            self.received += 1
            self.first_at = self.first_at if self.first_at is not None else now
            self._cond.notify_all()
            return True

    def _put_start(self, message: gateway_pb2.VerifyTravellerStreamRequest, kind: str | None) -> bool:
        if kind is None:
            return self._fail(InvalidArgument("a message sets neither start nor frame"))
        if self.start is not None:
            return self._fail(InvalidArgument("start: sent twice; it must be the first message only"))
        if kind != "start":
            return self._fail(InvalidArgument("the first message must be start (the document), then frames"))
        self.start = message.start
        self._cond.notify_all()
        return True

    def _fail(self, error: FacegateError) -> bool:
        self.error = error
        self._cond.notify_all()
        return False

    def close(self) -> None:
        """Capture is over: drop the waiting frame and every later one (the counts stay as they are)."""
        with self._cond:
            self.closed, self._frame = True, None

    def end(self, *, gone: bool = False) -> None:
        with self._cond:
            self.ended = True
            self.gone = self.gone or gone
            self._frame = None if gone else self._frame
            self._cond.notify_all()

    def wait_start(self, deadline: float) -> gateway_pb2.StreamStart | None:
        with self._cond:
            self._cond.wait_for(lambda: self._over() or self.start is not None, _left(deadline))
            self._raise()
            return self.start

    def take(self, deadline: float) -> Frame | None:
        """The newest unscored frame, or None when the deadline passed or the stream ended."""
        with self._cond:
            self._cond.wait_for(lambda: self._over() or self._frame is not None, _left(deadline))
            self._raise()
            frame, self._frame = self._frame, None
            return frame

    def _over(self) -> bool:
        return self.ended or self.gone or self.error is not None

    def _raise(self) -> None:
        if self.gone:
            raise ClientGone()
        if self.error is not None:
            raise self.error


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _read(requests: Iterator[gateway_pb2.VerifyTravellerStreamRequest], box: LatestFrame) -> None:
    """The reader thread: every message off the stream into ``box`` until it ends or breaks."""
    try:
        for message in requests:
            if not box.put(message):
                return
    except Exception:  # the RPC was cancelled or is over: iterating it raises
        box.end(gone=True)
        return
    box.end()


class CaptureSession:
    """One VerifyTravellerStream call: reader thread, capture loop, then what to decide on.

    Use as a context manager inside the handler's work slot; see the module docstring.
    """

    def __init__(
        self,
        requests: Iterator[gateway_pb2.VerifyTravellerStreamRequest],
        context: grpc.ServicerContext,
        down: Downstream,
        settings: GatewaySettings,
    ) -> None:
        self.settings = settings
        self.box = LatestFrame()
        self.calls = Calls()
        self.down = cancellable(down, self.calls)
        self.timings = Timings()
        self.best: ScoredFrame | None = None
        self.failed_frame: Frame | None = None  # the frame scoring broke on (SCORING_FAILED)
        self.scored = 0
        self.stop: int = STOP.CAPTURE_STOP_UNSPECIFIED
        self._context = context
        self._reader = threading.Thread(
            target=_read, args=(requests, self.box), name=READER_THREAD, daemon=True
        )

    def __enter__(self) -> CaptureSession:
        self._context.add_callback(self._terminated)
        self._reader.start()
        return self

    def __exit__(self, exc_type: Any, *_: object) -> None:
        if exc_type is not None and self.box.gone:
            metrics.STREAM_STOPS.labels("client_gone").inc()
        self.calls.cancel_all()
        self.box.end(gone=True)  # the reader keeps nothing more; it ends with the RPC

    def _terminated(self) -> None:
        """RPC termination (gRPC's callback): wake the capture loop and cancel open downstream calls."""
        self.box.end(gone=True)
        self.calls.cancel_all()

    # ---- capture -------------------------------------------------------------------------------

    def capture(self) -> Iterator[gateway_pb2.VerifyTravellerStreamResponse]:
        """Score frames and yield feedback until a stop condition; then :meth:`request` is ready."""
        opened = time.monotonic()
        start = self.box.wait_start(self._capped(opened + self.settings.stream_time_budget_s))
        if start is None and self.box.ended:
            raise InvalidArgument("the stream ended before its start message")
        if start is None:
            raise DeadlineExceeded("no start message arrived within the time budget")
        self._check_start(start)
        limits = Limits.of(self.settings, start)
        with self.timings.stage("capture"):
            try:
                yield from self._frames(opened, limits)
            finally:
                self.box.close()
        if self.best is None and self.failed_frame is None:
            if self.stop == STOP.CAPTURE_STOP_STREAM_END:
                raise InvalidArgument("the stream ended before any frame")
            raise DeadlineExceeded(f"no frame arrived within the time budget ({limits.budget_s:g} s)")
        metrics.STREAM_STOPS.labels(STOP.Name(self.stop).removeprefix("CAPTURE_STOP_").lower()).inc()

    def _frames(self, opened: float, limits: Limits) -> Iterator[gateway_pb2.VerifyTravellerStreamResponse]:
        while True:
            first = self.box.first_at
            deadline = self._capped((first if first is not None else opened) + limits.budget_s)
            frame = self.box.take(deadline) if time.monotonic() < deadline else None
            if frame is None:
                self.stop = STOP.CAPTURE_STOP_STREAM_END if self.box.ended else STOP.CAPTURE_STOP_TIME_BUDGET
                return
            try:
                scored = frame_quality.score(
                    self.down,
                    self.calls,
                    frame,
                    self.settings.stream_min_face_size,
                    self.settings.stream_other_face_ratio,
                )
            except ServiceFailure:
                self.failed_frame, self.stop = frame, STOP.CAPTURE_STOP_SCORING_FAILED
                return
            self.scored += 1
            metrics.STREAM_FRAMES.labels("scored").inc()
            if self.best is None or scored.rank() > self.best.rank():
                self.best = scored
            yield scored.feedback()
            if scored.acceptable:
                self.stop = STOP.CAPTURE_STOP_GOOD_FRAME
                return
            if self.scored >= limits.max_frames:
                self.stop = STOP.CAPTURE_STOP_FRAME_CAP
                return

    def _capped(self, deadline: float) -> float:
        """``deadline``, or earlier when the caller's own deadline leaves less than the decision needs."""
        left = remaining_s()
        if left is None:
            return deadline
        return min(deadline, time.monotonic() + left - self.settings.stream_decide_reserve_s)

    @staticmethod
    def _check_start(start: gateway_pb2.StreamStart) -> None:
        budget = start.time_budget_s
        if budget != 0 and not (math.isfinite(budget) and budget >= MIN_TIME_BUDGET_S):
            raise InvalidArgument(
                f"start.time_budget_s must be 0 (the gateway's budget) or at least {MIN_TIME_BUDGET_S:g} s, "
                f"not {budget!r}"
            )
        if start.request.document.HasField("live"):
            raise InvalidArgument(
                "start.request.document.live must be empty: the frames are the live capture"
            )
        kiosk.validate_document(start.request)

    # ---- after capture -------------------------------------------------------------------------

    def chosen(self) -> tuple[Frame, gateway_pb2.FrameQuality]:
        """The frame to decide on: the best scored one, or the one scoring failed on when none was."""
        if self.best is not None:
            return self.best.frame, self.best.quality
        assert self.failed_frame is not None
        return self.failed_frame, frame_quality.unscored(self.failed_frame)

    def request(self) -> gateway_pb2.VerifyTravellerRequest:
        """The VerifyTraveller request for the chosen frame (what the decision path is given)."""
        assert self.box.start is not None
        request = gateway_pb2.VerifyTravellerRequest()
        request.CopyFrom(self.box.start.request)
        request.document.live.CopyFrom(self.chosen()[0].image)
        return request

    def check_client(self) -> None:
        """ClientGone when the kiosk left: called just before the decision would be recorded."""
        if self.box.gone:
            raise ClientGone()

    def decision(
        self, response: gateway_pb2.VerifyTravellerResponse
    ) -> gateway_pb2.VerifyTravellerStreamResponse:
        """The stream's last message, and its time from the first frame into the metric."""
        _, quality = self.chosen()
        if self.box.first_at is not None:
            metrics.STREAM_DECISION_SECONDS.observe(time.monotonic() - self.box.first_at)
        return gateway_pb2.VerifyTravellerStreamResponse(
            decision=gateway_pb2.StreamDecision(
                response=response,
                chosen=quality,
                stop=self.stop,
                frames_received=self.box.received,
                frames_scored=self.scored,
                frames_skipped=self.box.skipped,
            )
        )
