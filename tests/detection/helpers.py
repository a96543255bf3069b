"""Small helpers shared by the detection tests: encoding images and building requests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from facegate.v1 import common_pb2, detection_pb2
from tests.support import FACES

TIMEOUT = 60.0
LFW = FACES / "images"


def lfw_images() -> list[Path]:
    return sorted(LFW.glob("*/*.jpg"))


def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def encode(rgb: np.ndarray, fmt: str = "PNG", **save_args: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt, **save_args)
    return out.getvalue()


def request(data: bytes, **options: object) -> detection_pb2.DetectRequest:
    return detection_pb2.DetectRequest(
        image=common_pb2.Image(data=data), options=detection_pb2.DetectionOptions(**options)
    )


def box_xyxy(box: common_pb2.BoundingBox) -> tuple[float, float, float, float]:
    return box.x, box.y, box.x + box.width, box.y + box.height


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def failed_checks(face: detection_pb2.DetectedFace) -> set[str]:
    return {common_pb2.QualityCheck.Name(c) for c in face.quality.failed}
