"""VerifyTravellerStream on the real stack: frames scored by the real detector, feedback in order,
early stop, caps, skip-to-latest under a fast camera, a kiosk that disconnects, and the stream in
the metrics, logs and audit trail like VerifyTraveller."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator

import grpc
import pytest
from prometheus_client import REGISTRY

from facegate.audit import read_records, verify_log
from facegate.context import call_context
from facegate.errors import DeadlineExceeded, InvalidArgument, PermissionDenied
from facegate.gateway_client import Gateway
from facegate.gateway_stream import FrameReport
from facegate.v1 import common_pb2, gateway_pb2
from gateway.stream import READER_THREAD
from services.runtime.logs import JsonFormatter
from tests.gateway import stream_frames as sf
from tests.gateway.conftest import OTHER_PERSON, TRAVELLER

pytestmark = pytest.mark.slow

PHOTO = sf.load(TRAVELLER / "Amram_Mitzna_0001.jpg")
PORTRAIT = (TRAVELLER / "Amram_Mitzna_0002.jpg").read_bytes()
GOOD = sf.good(PHOTO)
BLURRED = sf.blurred(PHOTO)
#: The degraded frames in stream order, each with the one instruction it must earn.
DEGRADED = [
    (BLURRED, "Please hold still", "sharpness"),
    (sf.dark(PHOTO), "Please step into the light", "brightness"),
    (sf.turned(PHOTO), "Please look straight at the camera", "roll"),
    (sf.cut_off(PHOTO), "Please stand in the centre", "face_in_frame"),
    (sf.two_people(PHOTO, sf.load(OTHER_PERSON)), "Only one person at a time, please", None),
    (sf.too_far(PHOTO), "Please step closer", "inter_eye_distance"),
]


def kiosk(stack) -> Gateway:
    return Gateway(stack.target, key=stack.keys["kiosk"], timeout=120)


class PacedCamera:
    """A camera that sends its next frame only after the gateway's feedback on the last one, so
    every frame is scored; after its frames it holds the stream open until :meth:`close`."""

    def __init__(self, frames: Iterable[bytes], *, hold_open: bool = False) -> None:
        self.frames, self.hold_open = list(frames), hold_open
        self._scored = threading.Semaphore(0)
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        for i, frame in enumerate(self.frames):
            if i and not self._scored.acquire(timeout=120):
                return
            if self._closed.is_set():
                return
            yield frame
        if self.hold_open:
            self._closed.wait(120)

    def on_feedback(self, report: FrameReport) -> None:
        self._scored.release()

    def close(self) -> None:
        self._closed.set()
        self._scored.release()


def stream(stack, frames: Iterable[bytes], *, hold_open: bool = False, **kwargs):
    camera = PacedCamera(frames, hold_open=hold_open)
    try:
        with kiosk(stack) as gw:
            return gw.verify_traveller_stream(
                camera, portrait=kwargs.pop("portrait", PORTRAIT), on_feedback=camera.on_feedback, **kwargs
            )
    finally:
        camera.close()


def records_of(stack, request_id: str) -> list[dict]:
    return [r for r in read_records(stack.audit_log) if r.get("request_id") == request_id]


def in_flight(service: str, method: str) -> float:
    return REGISTRY.get_sample_value("facegate_rpc_in_flight", {"service": service, "method": method}) or 0.0


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_until(condition, timeout_s: float = 60.0) -> bool:
    """Poll ``condition`` (a clean-up that happens in the background) until true or the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def nothing_left_running() -> bool:
    return (
        in_flight("gateway", "VerifyTravellerStream") == 0
        and in_flight("detection-shared", "Detect") == 0
        and in_flight("docverify-gw", "Verify") == 0
        and not any(t.name == READER_THREAD for t in threading.enumerate())
    )


# ---- capture, feedback, early stop ---------------------------------------------------------------


def test_degraded_frames_then_a_good_one_the_good_one_is_decided_on(stack) -> None:
    rid = f"stream-{uuid.uuid4().hex[:8]}"
    frames = [f for f, _, _ in DEGRADED] + [GOOD, GOOD]
    result = stream(stack, frames, gate_id="gate-s1", request_id=rid)

    # one feedback per scored frame, naming each frame's problem in order; nothing after the good one
    assert [f.instruction for f in result.feedback] == [i for _, i, _ in DEGRADED] + ["Please wait"]
    assert [f.index for f in result.feedback] == list(range(len(DEGRADED) + 1))
    for report, (_, _, check) in zip(result.feedback, DEGRADED, strict=False):
        assert not report.acceptable and report.problems
        assert check is None or check in report.failed_checks
    assert result.feedback[4].problem_codes[0] == "MULTIPLE_FACES" and result.feedback[4].faces == 2
    assert result.stop == "GOOD_FRAME" and result.frames_scored == len(DEGRADED) + 1
    assert result.chosen.index == len(DEGRADED) and result.chosen.acceptable and result.chosen.score == 1.0

    # the same decision VerifyTraveller gives, audited the same way (plus the capture stage)
    decision = result.decision
    assert decision.outcome == "ACCEPT" and decision.instruction == "Please proceed"
    assert set(decision.reason_codes) == {"MATCH", "WATCHLIST_CLEAR"} and decision.request_id == rid
    assert {"capture", "verify", "screen"} <= set(decision.timings_ms)
    (record,) = records_of(stack, rid)
    assert record["operation"] == "VerifyTraveller" and record["outcome"] == "ACCEPT"
    assert record["gate_id"] == "gate-s1" and record["decision_id"] == decision.decision_id
    assert "capture" in record["timings_ms"]


def test_a_good_first_frame_stops_at_once_and_a_different_person_is_referred(stack) -> None:
    result = stream(stack, [GOOD, BLURRED], portrait=OTHER_PERSON.read_bytes())
    assert result.stop == "GOOD_FRAME" and result.frames_scored == 1 and result.chosen.index == 0
    assert result.decision.outcome == "REFER" and result.decision.reasons == ()  # a kiosk sees no reasons
    (record,) = records_of(stack, result.decision.request_id)
    assert "NO_MATCH" in {r["code"] for r in record["reasons"]}


def test_no_acceptable_frame_ends_at_the_frame_cap_with_a_retry_and_its_reason(stack) -> None:
    frames = [BLURRED, sf.dark(PHOTO), BLURRED, GOOD]
    result = stream(stack, frames, max_frames=3)
    assert result.stop == "FRAME_CAP" and result.frames_scored == 3
    assert result.chosen.index in (0, 2) and not result.chosen.acceptable  # a GOOD frame never got scored
    decision = result.decision
    assert decision.outcome == "RETRY" and decision.instruction == "Please hold still"
    assert decision.reason_codes == ("QUALITY_TOO_LOW",)
    assert "sharpness" in decision.reasons[0][1]
    (record,) = records_of(stack, decision.request_id)
    assert record["outcome"] == "RETRY"


def test_no_acceptable_frame_when_the_time_budget_runs_out_is_decided_on_the_best_frame(stack) -> None:
    result = stream(stack, [sf.two_people(PHOTO, sf.load(OTHER_PERSON))], hold_open=True, time_budget_s=1.0)
    assert result.stop == "TIME_BUDGET" and result.frames_scored == 1
    assert result.decision.outcome == "RETRY"
    assert result.decision.instruction == "Only one person at a time, please"
    assert "MULTIPLE_FACES" in result.decision.reason_codes


def test_a_specimen_document_holder_streamed_is_referred_for_the_expired_document(stack) -> None:
    """Frames of the ICAO example person (cut from one specimen page by docverify itself), checked
    against another specimen's page scan and its expired MRZ: the good frame is chosen, then REFER."""
    from PIL import Image

    from facegate.v1 import docverify_pb2, docverify_pb2_grpc
    from tests.docverify.frames import decode, page
    from tests.docverify.specimens import SPECIMENS
    from tests.support import connect

    with connect(stack.docverify) as ch:
        reply = docverify_pb2_grpc.DocVerifyServiceStub(ch).ExtractPortrait(
            docverify_pb2.ExtractPortraitRequest(
                page_scan=common_pb2.Image(data=page("id_cards_ICAO_Utopia_TD1.jpg"))
            )
        )
    holder = Image.fromarray(decode(reply.portrait.data))
    td3 = next(s for s in SPECIMENS if s["file"] == "passports_ICAO_Utopia_TD3_hires.jpg")
    result = stream(
        stack,
        [sf.dark(holder), sf.good(holder)],
        portrait=None,
        page_scan=page(td3["file"]),
        mrz="\n".join(td3["mrz"]),
    )
    assert [f.instruction for f in result.feedback] == ["Please step into the light", "Please wait"]
    assert result.stop == "GOOD_FRAME" and result.chosen.index == 1
    assert result.decision.outcome == "REFER" and result.decision.reasons == ()
    (record,) = records_of(stack, result.decision.request_id)
    assert "DOCUMENT_EXPIRED" in {r["code"] for r in record["reasons"]}


def test_a_stream_that_ends_early_is_decided_on_what_it_sent(stack) -> None:
    result = stream(stack, [sf.too_far(PHOTO)])
    assert result.stop == "STREAM_END" and result.decision.outcome == "RETRY"
    assert result.decision.instruction == "Please step closer"


# ---- back-pressure and disconnects ----------------------------------------------------------------


def test_a_fast_camera_is_skipped_to_its_latest_frame_not_buffered(stack) -> None:
    frames = [BLURRED] * 60 + [GOOD]
    skipped_before = sample("facegate_gateway_stream_frames_total", fate="skipped")
    done = threading.Event()

    def camera() -> Iterator[bytes]:
        yield from frames  # as fast as gRPC takes them
        done.wait(120)  # hold the stream open: the good frame ends it, not the stream's end

    try:
        with kiosk(stack) as gw:
            result = gw.verify_traveller_stream(camera(), portrait=PORTRAIT)
    finally:
        done.set()
    assert result.stop == "GOOD_FRAME" and result.chosen.index == len(frames) - 1
    # far fewer frames were scored than sent: the rest were replaced by newer ones, never queued
    assert result.frames_scored < len(frames) // 2
    assert result.frames_received == len(frames)
    assert result.frames_skipped == result.frames_received - result.frames_scored
    assert (
        sample("facegate_gateway_stream_frames_total", fate="skipped") - skipped_before
        == result.frames_skipped
    )
    assert wait_until(nothing_left_running)


def test_a_kiosk_that_disconnects_mid_stream_leaves_nothing_behind(stack) -> None:
    rid = f"gone-{uuid.uuid4().hex[:8]}"
    gone_before = sample("facegate_gateway_stream_stops_total", stop="client_gone")
    sent_second, done = threading.Event(), threading.Event()

    def camera() -> Iterator[gateway_pb2.VerifyTravellerStreamRequest]:
        yield start()
        yield frame(BLURRED)
        time.sleep(0.2)
        yield frame(BLURRED)  # no good frame: the gateway is scoring or waiting for the next one
        sent_second.set()
        done.wait(120)

    try:
        with kiosk(stack) as gw, call_context(request_id=rid):
            responses = gw.stub.VerifyTravellerStream(camera(), timeout=120)
            first = next(responses)
            assert first.WhichOneof("item") == "feedback"
            assert sent_second.wait(60)
            responses.cancel()
            with pytest.raises(grpc.RpcError) as err:
                next(responses)
            assert err.value.code() == grpc.StatusCode.CANCELLED
    finally:
        done.set()

    assert wait_until(nothing_left_running)
    assert wait_until(lambda: sample("facegate_gateway_stream_stops_total", stop="client_gone") > gone_before)
    # no decision was answered, so none is recorded; the chain is intact
    assert records_of(stack, rid) == [] and verify_log(stack.audit_log).ok
    # and the retry cache holds no claim: the same request id is decided afresh, once
    result = stream(stack, [GOOD], request_id=rid)
    assert result.decision.outcome == "ACCEPT" and len(records_of(stack, rid)) == 1


def test_a_kiosk_that_disconnects_while_its_frame_is_scored_leaves_nothing_behind(stack) -> None:
    """Cancelled while the gateway waits on detection (a 12-megapixel frame without a face keeps
    Detect busy): the gateway cancels its open call and ends; nothing is recorded."""
    import io

    import numpy as np
    from PIL import Image

    noise = io.BytesIO()
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(noise, format="JPEG")
    rid = f"busy-{uuid.uuid4().hex[:8]}"
    done = threading.Event()

    def camera() -> Iterator[gateway_pb2.VerifyTravellerStreamRequest]:
        yield start()
        yield frame(noise.getvalue())
        done.wait(120)

    try:
        with kiosk(stack) as gw, call_context(request_id=rid):
            responses = gw.stub.VerifyTravellerStream(camera(), timeout=120)
            assert wait_until(lambda: in_flight("detection-shared", "Detect") >= 1)
            responses.cancel()
    finally:
        done.set()
    assert wait_until(nothing_left_running)
    assert records_of(stack, rid) == []


def test_the_same_request_id_gets_the_first_decision_back(stack) -> None:
    rid = f"again-{uuid.uuid4().hex[:8]}"
    first = stream(stack, [GOOD], request_id=rid)
    again = stream(stack, [BLURRED], request_id=rid)
    assert again.decision == first.decision and again.chosen == first.chosen
    assert len(records_of(stack, rid)) == 1


# ---- refused streams ------------------------------------------------------------------------------


def raw(stack, messages: list[gateway_pb2.VerifyTravellerStreamRequest], role: str = "kiosk") -> list:
    with Gateway(stack.target, key=stack.keys[role], timeout=60) as gw:
        try:
            return list(gw.stub.VerifyTravellerStream(iter(messages)))
        except grpc.RpcError as exc:
            from facegate.errors import from_rpc_error

            raise from_rpc_error(exc) from None


def start(**document) -> gateway_pb2.VerifyTravellerStreamRequest:
    request = gateway_pb2.VerifyTravellerRequest()
    request.document.portrait_image.data = PORTRAIT
    for field, data in document.items():
        getattr(request.document, field).data = data
    return gateway_pb2.VerifyTravellerStreamRequest(start=gateway_pb2.StreamStart(request=request))


def budget(seconds: float) -> gateway_pb2.VerifyTravellerStreamRequest:
    message = start()
    message.start.time_budget_s = seconds
    return message


def frame(data: bytes) -> gateway_pb2.VerifyTravellerStreamRequest:
    return gateway_pb2.VerifyTravellerStreamRequest(
        frame=gateway_pb2.CaptureFrame(image=common_pb2.Image(data=data))
    )


@pytest.mark.parametrize(
    "messages,message",
    [
        ([frame(GOOD)], "the first message must be start"),
        ([start(), start()], "sent twice"),
        ([start(live=GOOD), frame(GOOD)], "document.live must be empty"),
        ([start(), frame(b"")], "frame 0: the image is empty"),
        ([start(), frame(b"not an image at all")], "frame 0"),
        ([start()], "the stream ended before any frame"),
        ([], "the stream ended before its start message"),
        ([budget(0.01), frame(GOOD)], "time_budget_s must be 0 .* or at least 0.5 s"),
        ([budget(-1.0), frame(GOOD)], "time_budget_s must be"),
        ([budget(float("nan")), frame(GOOD)], "time_budget_s must be"),
        ([budget(float("inf")), frame(GOOD)], "time_budget_s must be"),
    ],
    ids=[
        "no-start",
        "two-starts",
        "live-in-start",
        "empty-frame",
        "corrupt-frame",
        "no-frames",
        "nothing",
        "tiny-budget",
        "negative-budget",
        "nan-budget",
        "infinite-budget",
    ],
)
def test_a_malformed_stream_is_refused_precisely_and_nothing_is_decided(stack, messages, message) -> None:
    before = len(list(read_records(stack.audit_log)))
    with pytest.raises(InvalidArgument, match=message):
        raw(stack, messages)
    assert len(list(read_records(stack.audit_log))) == before


def test_only_kiosks_may_stream_and_a_silent_camera_runs_out_of_time(stack) -> None:
    with pytest.raises(PermissionDenied):
        raw(stack, [start(), frame(GOOD)], role="officer")
    with pytest.raises(DeadlineExceeded, match="no frame arrived"):
        stream(stack, [], hold_open=True, time_budget_s=0.5)


# ---- metrics and logs -----------------------------------------------------------------------------


class JsonLines(logging.Handler):
    """The JSON log lines as the services write them (formatted at emit, in the caller's context)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter("test"))
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_the_stream_is_counted_and_its_request_id_is_logged_on_every_hop(stack, caplog) -> None:
    rid = f"logged-{uuid.uuid4().hex[:8]}"
    ok_before = sample(
        "facegate_rpc_requests_total", service="gateway", method="VerifyTravellerStream", code="OK"
    )
    decided_before = sample("facegate_gateway_stream_decision_seconds_count")
    handler = JsonLines()
    logging.getLogger().addHandler(handler)
    try:
        with caplog.at_level(logging.INFO), call_context(request_id=rid):  # the SDK sends the caller's id
            result = stream(stack, [BLURRED, GOOD])
    finally:
        logging.getLogger().removeHandler(handler)
    assert result.decision.request_id == rid
    assert (
        sample("facegate_rpc_requests_total", service="gateway", method="VerifyTravellerStream", code="OK")
        == ok_before + 1
    )
    assert sample("facegate_gateway_stream_decision_seconds_count") == decided_before + 1
    assert sample("facegate_gateway_stream_stops_total", stop="good_frame") >= 1
    assert sample("facegate_gateway_stage_seconds_count", stage="capture") >= 1
    # one "rpc" line per call with the kiosk's request id: the stream's own and every downstream hop
    methods = {
        line["method"] for line in handler.lines if line.get("request_id") == rid and line["msg"] == "rpc"
    }
    assert {"VerifyTravellerStream", "Detect", "Verify", "Search"} <= methods


# ---- the CLI --------------------------------------------------------------------------------------


def cli_run(stack, *argv: str, capsys) -> tuple[int, str, str]:
    from facegate import cli

    code = cli.main([*argv, "--target", stack.target, "--key", stack.keys["kiosk"]])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_plays_a_folder_of_frames_and_prints_feedback_then_the_decision(stack, tmp_path, capsys) -> None:
    for i, data in enumerate([BLURRED, sf.dark(PHOTO), GOOD]):
        (tmp_path / f"frame_{i:03d}.jpg").write_bytes(data)
    portrait = str(TRAVELLER / "Amram_Mitzna_0002.jpg")
    code, out, _ = cli_run(
        stack, "verify", "--live-video", str(tmp_path), "--fps", "2", "--portrait", portrait, capsys=capsys
    )
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("frame 0") and "Please hold still" in lines[0]
    assert "Please step into the light" in lines[1] and "Please wait" in lines[2]
    assert lines[3].startswith("ACCEPT") and "frame   2 chosen (good frame)" in out


def test_cli_plays_a_video_file_through_opencv(stack, tmp_path, capsys) -> None:
    import cv2
    import numpy as np

    from tests.docverify.frames import decode

    video = tmp_path / "gate.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1280, 720))
    for data in [BLURRED] * 3 + [GOOD] * 3:
        writer.write(np.ascontiguousarray(decode(data)[:, :, ::-1]))
    writer.release()
    portrait = str(TRAVELLER / "Amram_Mitzna_0002.jpg")
    argv = ("verify", "--live-video", str(video), "--fps", "10", "--portrait", portrait, "--json")
    code, out, _ = cli_run(stack, *argv, capsys=capsys)
    result = json.loads(out)
    assert code == 0 and result["decision"]["outcome"] == "ACCEPT" and result["stop"] == "GOOD_FRAME"
    assert result["chosen"]["index"] >= 3 and result["feedback"][0]["instruction"] == "Please hold still"
    code, _, err = cli_run(
        stack, "verify", "--live-video", str(tmp_path / "none.mp4"), "--portrait", portrait, capsys=capsys
    )
    assert code == 1 and "no such file or folder" in err
