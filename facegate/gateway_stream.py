"""The SDK side of VerifyTravellerStream: camera frames in, feedback and one decision out.

Used through :meth:`facegate.Gateway.verify_traveller_stream`::

    with facegate.Gateway(key=kiosk_key) as gw:
        result = gw.verify_traveller_stream(camera_frames(), portrait=chip_portrait, gate_id="gate-7",
                                            on_feedback=lambda f: screen.show(f.instruction))
        result.decision.outcome, result.chosen.index, result.stop  # "ACCEPT", 4, "GOOD_FRAME"

``frames`` is any iterable of images (path, bytes or RGB array) or of ``(image, captured_at)``
pairs with ``captured_at`` in seconds since the epoch; it is consumed on gRPC's sending thread as
the camera produces frames, and no longer once the gateway has decided.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from facegate.api import ImageLike, as_image
from facegate.errors import ServiceFailure
from facegate.gateway_client import Decision, decision_from_proto
from facegate.v1 import common_pb2, gateway_pb2

#: A frame: an image, or an image with its capture time (seconds since the epoch).
FrameLike = ImageLike | tuple[ImageLike, float]


@dataclass(frozen=True)
class FrameReport:
    """The gateway's verdict on one frame (what a kiosk shows while capturing)."""

    index: int  # 0-based position in the stream
    acceptable: bool  # one face, every quality check passed
    faces: int
    score: float  # fraction of quality checks passed (0: no face)
    failed_checks: tuple[str, ...]  # e.g. ("sharpness",)
    problems: tuple[tuple[str, str], ...]  # (code, message), e.g. ("MULTIPLE_FACES", "2 faces in ...")
    instruction: str = ""  # feedback only: what to tell the traveller

    @property
    def problem_codes(self) -> tuple[str, ...]:
        return tuple(code for code, _ in self.problems)


@dataclass(frozen=True)
class StreamResult:
    """The stream's decision, the frame it was made on and how the capture went."""

    decision: Decision
    chosen: FrameReport
    stop: str  # "GOOD_FRAME", "FRAME_CAP", "TIME_BUDGET", "STREAM_END" or "SCORING_FAILED"
    frames_received: int
    frames_scored: int
    frames_skipped: int
    feedback: tuple[FrameReport, ...]  # one per scored frame, in order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def frame_report(quality: gateway_pb2.FrameQuality, instruction: str = "") -> FrameReport:
    return FrameReport(
        index=quality.frame_index,
        acceptable=quality.acceptable,
        faces=quality.faces,
        score=quality.score,
        failed_checks=tuple(
            common_pb2.QualityCheck.Name(c).removeprefix("QUALITY_CHECK_").lower()
            for c in quality.quality.failed
        ),
        problems=tuple(
            (common_pb2.ReasonCode.Name(p.code).removeprefix("REASON_CODE_"), p.message)
            for p in quality.problems
        ),
        instruction=instruction,
    )


def stream_requests(
    start: gateway_pb2.StreamStart, frames: Iterable[FrameLike]
) -> Iterator[gateway_pb2.VerifyTravellerStreamRequest]:
    """The start message, then one message per frame (stamped now when no capture time is given)."""
    yield gateway_pb2.VerifyTravellerStreamRequest(start=start)
    for item in frames:
        image, captured = item if isinstance(item, tuple) else (item, time.time())
        stamp = Timestamp()
        stamp.FromNanoseconds(int(captured * 1e9))
        frame = gateway_pb2.CaptureFrame(image=as_image(image), captured_at=stamp)
        yield gateway_pb2.VerifyTravellerStreamRequest(frame=frame)


def collect(
    responses: Iterable[gateway_pb2.VerifyTravellerStreamResponse],
    on_feedback: Callable[[FrameReport], None] | None = None,
) -> StreamResult:
    """Read the gateway's answers: feedback (passed to ``on_feedback``) until the decision."""
    feedback: list[FrameReport] = []
    for message in responses:
        if message.WhichOneof("item") == "feedback":
            report = frame_report(message.feedback.frame, message.feedback.instruction)
            feedback.append(report)
            if on_feedback is not None:
                on_feedback(report)
            continue
        result = message.decision
        for _ in responses:  # the call's status (the gateway ends the stream after its decision)
            pass
        return StreamResult(
            decision=decision_from_proto(result.response.decision),
            chosen=frame_report(result.chosen),
            stop=gateway_pb2.CaptureStop.Name(result.stop).removeprefix("CAPTURE_STOP_"),
            frames_received=result.frames_received,
            frames_scored=result.frames_scored,
            frames_skipped=result.frames_skipped,
            feedback=tuple(feedback),
        )
    raise ServiceFailure("the gateway ended the stream without a decision")
