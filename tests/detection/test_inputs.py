"""Bad input gets a precise status (and the server keeps answering); EXIF and large images map back."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from PIL import Image

from facegate.v1 import common_pb2, detection_pb2
from tests.detection.conftest import MAX_BYTES, MAX_PIXELS
from tests.detection.helpers import TIMEOUT, box_xyxy, encode, iou, read_rgb, request
from tests.support import FACES

GOOD = FACES / "images" / "Zhu_Rongji" / "Zhu_Rongji_0001.jpg"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def _bad_inputs() -> dict[str, tuple[bytes, int, grpc.StatusCode, str]]:
    """name -> (data, format_hint, expected status, a phrase the message must hold)."""
    jpeg = GOOD.read_bytes()
    blank = np.zeros((4000, MAX_PIXELS // 4000 + 1, 3), np.uint8)  # just over the test pixel limit
    return {
        "empty": (b"", 0, INVALID, "empty"),
        "truncated": (jpeg[: len(jpeg) // 2], 0, INVALID, "truncated"),
        "corrupt": (jpeg[:20] + bytes(range(256)) * 8, 0, INVALID, "cannot be decoded"),
        "non_image": (b"%PDF-1.7\nthis is not an image\n" * 10, 0, INVALID, "unsupported"),
        "unsupported_gif": (_gif(), 0, INVALID, "unsupported"),
        "hint_contradicts": (jpeg, common_pb2.IMAGE_FORMAT_PNG, INVALID, "format hint"),
        "unknown_hint": (jpeg, 77, INVALID, "format_hint"),
        "oversize_bytes": (jpeg[:3] + b"\x00" * (MAX_BYTES + 1), 0, EXHAUSTED, "bytes"),
        "oversize_pixels": (encode(blank), 0, EXHAUSTED, "pixels"),
    }


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(out, format="GIF")
    return out.getvalue()


def _assert_still_serving(stub) -> None:
    reply = stub.Detect(request(GOOD.read_bytes()), timeout=TIMEOUT)
    assert reply.subject_index == 0 and len(reply.faces) == 1


@pytest.mark.parametrize("kind", list(_bad_inputs()))
def test_bad_image_gets_its_status_and_the_server_stays_up(stub, kind):
    data, hint, code, phrase = _bad_inputs()[kind]
    with pytest.raises(grpc.RpcError) as err:
        stub.Detect(
            detection_pb2.DetectRequest(image=common_pb2.Image(data=data, format_hint=hint)), timeout=TIMEOUT
        )
    assert err.value.code() == code, err.value.details()
    assert phrase in err.value.details().lower()
    _assert_still_serving(stub)


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"min_confidence": -0.1}, "min_confidence"),
        ({"alignment": common_pb2.AlignmentSpec(size=8, margin=0.2)}, "alignment.size"),
        ({"alignment": common_pb2.AlignmentSpec(size=2048, margin=0.2)}, "alignment.size"),
        ({"alignment": common_pb2.AlignmentSpec(size=160, margin=0.7)}, "alignment.margin"),
        ({"subject_selection": 9}, "subject_selection"),
        ({"min_face_size": 50_000}, "min_face_size"),
    ],
)
def test_bad_options_are_invalid_argument(stub, options, phrase):
    with pytest.raises(grpc.RpcError) as err:
        stub.Detect(request(GOOD.read_bytes(), **options), timeout=TIMEOUT)
    assert err.value.code() == INVALID
    assert phrase in err.value.details()
    _assert_still_serving(stub)


def test_batch_reports_bad_items_without_failing_the_batch(stub):
    bad = _bad_inputs()
    images = [
        common_pb2.Image(data=GOOD.read_bytes()),
        common_pb2.Image(data=bad["truncated"][0]),
        common_pb2.Image(data=bad["oversize_pixels"][0]),
        common_pb2.Image(data=(FACES / "no_face" / "skimage_brick.png").read_bytes()),
        common_pb2.Image(data=b""),
    ]
    reply = stub.DetectBatch(detection_pb2.DetectBatchRequest(images=images), timeout=TIMEOUT)
    kinds = [item.WhichOneof("result") for item in reply.items]
    assert kinds == ["response", "error", "error", "response", "error"]
    assert len(reply.items[0].response.faces) == 1
    assert reply.items[1].error.code == INVALID.value[0] and "images[1]" in reply.items[1].error.message
    assert reply.items[2].error.code == EXHAUSTED.value[0]
    assert reply.items[3].response.subject_index == -1 and not reply.items[3].response.faces
    assert reply.items[4].error.code == INVALID.value[0]


def test_batch_size_limit_and_empty_batch(stub):
    limit = 16
    images = [common_pb2.Image(data=GOOD.read_bytes())] * (limit + 1)
    with pytest.raises(grpc.RpcError) as err:
        stub.DetectBatch(detection_pb2.DetectBatchRequest(images=images), timeout=TIMEOUT)
    assert err.value.code() == EXHAUSTED and str(limit) in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.DetectBatch(detection_pb2.DetectBatchRequest(), timeout=TIMEOUT)
    assert err.value.code() == INVALID
    _assert_still_serving(stub)


def test_zero_faces_is_a_valid_answer(stub):
    reply = stub.Detect(request(encode(np.full((300, 400, 3), 127, np.uint8))), timeout=TIMEOUT)
    assert not reply.faces and reply.subject_index == -1
    assert (reply.image_width, reply.image_height) == (400, 300)


def test_exif_orientation_is_applied_before_detection(stub):
    """A JPEG stored sideways with EXIF orientation 6 reports coordinates in the upright image."""
    upright = read_rgb(GOOD)
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # what a sideways sensor would store
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    reference = stub.Detect(request(encode(upright)), timeout=TIMEOUT)
    rotated = stub.Detect(request(data), timeout=TIMEOUT)
    assert (rotated.image_width, rotated.image_height) == (upright.shape[1], upright.shape[0])
    a = reference.faces[reference.subject_index]
    b = rotated.faces[rotated.subject_index]
    assert iou(box_xyxy(a.box), box_xyxy(b.box)) > 0.8
    assert abs(a.landmarks.left_eye.x - b.landmarks.left_eye.x) < 3
    assert abs(a.landmarks.left_eye.y - b.landmarks.left_eye.y) < 3


def test_large_image_is_detected_on_a_downscaled_copy_and_mapped_back(stub):
    """A 1920x1080 frame holding a face 6x the LFW size, off-centre: boxes come back in frame pixels."""
    import cv2

    face = cv2.resize(read_rgb(GOOD), (900, 900), interpolation=cv2.INTER_CUBIC)
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    frame[100:1000, 700:1600] = face
    small = stub.Detect(request(encode(read_rgb(GOOD))), timeout=TIMEOUT)
    reply = stub.Detect(request(encode(frame), return_crops=True), timeout=TIMEOUT)
    assert reply.detection_scale == pytest.approx(1024 / 1920, rel=1e-6)
    assert (reply.image_width, reply.image_height) == (1920, 1080)
    got = reply.faces[reply.subject_index]
    x1, y1, x2, y2 = box_xyxy(small.faces[small.subject_index].box)
    expected = (700 + x1 * 6, 100 + y1 * 6, 700 + x2 * 6, 100 + y2 * 6)
    assert iou(box_xyxy(got.box), expected) > 0.8
    assert abs(got.landmarks.left_eye.x - (700 + small.faces[0].landmarks.left_eye.x * 6)) < 12
    assert got.aligned.width == 160 and len(got.aligned.rgb) == 160 * 160 * 3
    # Crops come from the full-resolution frame, so the inter-eye distance is measured there too.
    ied = next(m for m in got.quality.measures if m.check == common_pb2.QUALITY_CHECK_INTER_EYE_DISTANCE)
    assert ied.value > 100 and ied.passed
