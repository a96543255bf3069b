"""Synthetic gate-camera streams: a dev photo on a 1280x720 frame, degraded the ways a real capture
goes wrong while the traveller steps in (blurred, dark, turned, cut off, a second person, too far).

Each degraded frame fails the live quality policy for one reason, so the feedback it earns is
known in advance; the tests and ``bench/bench_stream.py`` build their streams from these.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from tools.gate_frame import FACE_HEIGHT, FRAME


def _jpeg(canvas: Image.Image) -> bytes:
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=92)
    return out.getvalue()


def _scaled(photo: Image.Image, height: int) -> Image.Image:
    scale = height / photo.height
    return photo.resize((max(1, round(photo.width * scale)), height), Image.LANCZOS)


def _canvas() -> Image.Image:
    return Image.new("RGB", FRAME, (128, 128, 128))


def _placed(photo: Image.Image, *, height: int = FACE_HEIGHT, dx: int = 0, angle: float = 0.0) -> Image.Image:
    """The photo scaled to ``height`` rows, centred (moved ``dx`` pixels right), turned ``angle`` degrees."""
    face = _scaled(photo, height)
    if angle:
        face = face.rotate(angle, resample=Image.BICUBIC, fillcolor=(128, 128, 128))
    canvas = _canvas()
    canvas.paste(face, ((FRAME[0] - face.width) // 2 + dx, (FRAME[1] - face.height) // 2))
    return canvas


def good(photo: Image.Image) -> bytes:
    return _jpeg(_placed(photo))


def blurred(photo: Image.Image) -> bytes:
    return _jpeg(_placed(photo).filter(ImageFilter.GaussianBlur(12)))


def dark(photo: Image.Image) -> bytes:
    return _jpeg(Image.fromarray((np.asarray(_placed(photo), dtype=np.float32) * 0.18).astype(np.uint8)))


def turned(photo: Image.Image) -> bytes:
    return _jpeg(_placed(photo, angle=35))


def cut_off(photo: Image.Image) -> bytes:
    return _jpeg(_placed(photo, dx=-(FRAME[0] // 2)))


def too_far(photo: Image.Image) -> bytes:
    return _jpeg(_placed(photo, height=150))


def two_people(photo: Image.Image, other: Image.Image) -> bytes:
    canvas = _canvas()
    for img, x in ((_scaled(photo, 480), 40), (_scaled(other, 480), FRAME[0] // 2 + 40)):
        canvas.paste(img, (x, (FRAME[1] - img.height) // 2))
    return _jpeg(canvas)


#: Degradations of one photo, by name.
DEGRADED: dict[str, Callable[[Image.Image], bytes]] = {
    "blurred": blurred,
    "dark": dark,
    "turned": turned,
    "cut_off": cut_off,
    "too_far": too_far,
}


def load(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")
