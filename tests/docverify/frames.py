"""Test inputs built from the shared data: page bytes, portrait crops and gate-camera-like frames."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from tests.support import DOCUMENTS
from tools.gate_frame import live_frame  # noqa: F401  (re-exported for the tests)


def page(name: str) -> bytes:
    return (DOCUMENTS / name).read_bytes()


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
