"""One camera frame of VerifyTravellerStream, scored: the detection service's quality verdict under
the kiosk profile, what it asks of the traveller, and which of two frames is the better one.

A frame is *acceptable* when detection finds the traveller and no second person (another face at
least ``other_face_ratio`` of the traveller's size; smaller ones are background, reported in the
single-face measure: ``facegate.single_face``, the rule docverify applies) and that face passes
every live quality check (size, pose, sharpness, exposure, in frame, detector confidence): what
docverify requires of a live capture before its comparison counts, so a frame accepted here is not
turned back by the verification that follows. The detection policy is docverify's live policy: the kiosk
profile first (a face of at least ``stream_min_face_size`` px, searched on a scaled copy: tens of
milliseconds), the whole frame only when that finds nothing, so a traveller still far away is
told to step closer rather than to look at the camera.

The feedback text is the decision's own (``gateway.decision.capture_instruction``): a kiosk says
the same thing whether a frame or a RETRY decision asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from facegate.pipeline import FacePolicy, failed_checks, subject_face
from facegate.single_face import search_floor, with_single_face
from facegate.v1 import common_pb2, detection_pb2, gateway_pb2
from gateway.cancellable import Calls
from gateway.decision import capture_instruction
from gateway.downstream import Downstream

R = common_pb2.ReasonCode

#: The instruction for a frame that passed every check: the decision follows.
WAIT = "Please wait"


@dataclass(frozen=True)
class Frame:
    """A frame as it came off the stream."""

    index: int  # 0-based position in the stream, skipped frames included
    image: common_pb2.Image
    captured_at: Timestamp
    received: float  # time.monotonic() when the gateway read it


@dataclass(frozen=True)
class ScoredFrame:
    frame: Frame
    quality: gateway_pb2.FrameQuality
    instruction: str

    @property
    def acceptable(self) -> bool:
        return self.quality.acceptable

    def rank(self) -> tuple[bool, bool, float, int]:
        """Better frames rank higher: acceptable, then one person, then more checks passed, then newer."""
        one_person = not any(p.code == R.REASON_CODE_MULTIPLE_FACES for p in self.quality.problems)
        return (
            self.quality.acceptable,
            one_person and self.quality.faces > 0,
            self.quality.score,
            self.frame.index,
        )

    def feedback(self) -> gateway_pb2.VerifyTravellerStreamResponse:
        return gateway_pb2.VerifyTravellerStreamResponse(
            feedback=gateway_pb2.CaptureFeedback(instruction=self.instruction, frame=self.quality)
        )


def unscored(frame: Frame) -> gateway_pb2.FrameQuality:
    """The record of a frame that could not be scored (only its index and capture time)."""
    return gateway_pb2.FrameQuality(frame_index=frame.index, captured_at=frame.captured_at)


def judge(
    frame: Frame,
    response: detection_pb2.DetectResponse,
    other_face_ratio: float,
    searched_from: int | None = None,
) -> ScoredFrame:
    """The verdict on ``frame`` from detection's answer (a pure function); ``searched_from``: the
    smallest face side the search looked for, for the single-face measure's detail."""
    face = subject_face(response)
    problems = []
    if face is None:
        problems.append(common_pb2.Reason(code=R.REASON_CODE_NO_FACE, message="no face found in the frame"))
    else:
        face_quality, people = with_single_face(response, other_face_ratio, searched_from)
        if people > 1:
            single = face_quality.measures[-1]
            message = f"{people} people in the frame; exactly one is required: {single.detail}"
            problems.append(common_pb2.Reason(code=R.REASON_CODE_MULTIPLE_FACES, message=message))
        if not face.quality.acceptable:
            message = "frame fails " + failed_checks(face.quality)
            problems.append(common_pb2.Reason(code=R.REASON_CODE_QUALITY_TOO_LOW, message=message))
    quality = unscored(frame)
    quality.acceptable = not problems
    quality.faces = response.faces_total if face is not None else 0
    if face is not None:
        quality.quality.CopyFrom(face_quality)
        measures = face_quality.measures
        quality.score = sum(m.passed for m in measures) / len(measures) if measures else 0.0
    quality.problems.extend(problems)
    failed = face.quality.failed if face is not None else ()  # what the traveller can fix
    instruction = WAIT if not problems else capture_instruction({p.code for p in problems}, failed)
    return ScoredFrame(frame, quality, instruction)


def score(
    down: Downstream, calls: Calls, frame: Frame, min_face_size: int, other_face_ratio: float
) -> ScoredFrame:
    """Detect every face on ``frame`` (kiosk profile, then the whole frame when it finds nothing)
    and judge it.

    Raises the pipeline's errors: InvalidArgument / ResourceExhausted for a frame detection
    refuses (naming the frame), ServiceFailure when detection does not answer, ClientGone when
    the stream was cancelled meanwhile.
    """
    what = f"frame {frame.index}"
    kiosk = FacePolicy(min_face_size=min_face_size, scale_to_min_face=True, all_faces=True)
    response = _detect(down, calls, frame.image, kiosk, what)
    if response.subject_index < 0:
        response = _detect(down, calls, frame.image, FacePolicy(all_faces=True), what)
    face = subject_face(response)
    floor = search_floor(face, min_face_size, None) if face is not None else None
    return judge(frame, response, other_face_ratio, floor)


def _detect(
    down: Downstream, calls: Calls, image: common_pb2.Image, policy: FacePolicy, what: str
) -> detection_pb2.DetectResponse:
    with calls.tracking(down.pipeline.detect_async(image, policy)) as call:
        return down.pipeline.detect_result(call, what)
