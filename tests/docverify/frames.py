"""Test inputs built from the shared data: page bytes, portrait crops and gate-camera-like frames."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from tests.support import DOCUMENTS


def page(name: str) -> bytes:
    return (DOCUMENTS / name).read_bytes()


def live_frame(rgb: np.ndarray, face_height: int = 560, size: tuple[int, int] = (1280, 720)) -> bytes:
    """A 1280x720 JPEG in which ``rgb`` (a portrait or a face photo) fills most of the height,
    as a traveller a metre from a gate camera would."""
    img = Image.fromarray(rgb)
    scale = face_height / img.height
    img = img.resize((max(1, round(img.width * scale)), face_height), Image.LANCZOS)
    canvas = Image.new("RGB", size, (128, 128, 128))
    canvas.paste(img, ((size[0] - img.width) // 2, (size[1] - img.height) // 2))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=92)
    return out.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def encode(rgb: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG2000":
        Image.fromarray(rgb).save(
            out, format="JPEG2000", irreversible=True, quality_mode="rates", quality_layers=[10]
        )
    else:
        Image.fromarray(rgb).save(out, format=fmt, quality=90)
    return out.getvalue()
