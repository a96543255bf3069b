"""A gate-camera-like frame from a photo: ``python -m tools.gate_frame PHOTO OUT.jpg``.

An e-gate camera sees a traveller about a metre away: a 1280x720 frame in which the face fills
most of the height. The dev photos are 150x150, so their faces are far below the gate camera's
quality bounds (60 px between the eyes); scaled onto such a frame they are what a kiosk would send.
Used by the README's first example and by the tests.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

FRAME = (1280, 720)
FACE_HEIGHT = 560


def live_frame(rgb: np.ndarray, face_height: int = FACE_HEIGHT, size: tuple[int, int] = FRAME) -> bytes:
    """A JPEG of ``size`` in which ``rgb`` (a portrait or a face photo) fills ``face_height`` rows."""
    img = Image.fromarray(rgb)
    scale = face_height / img.height
    img = img.resize((max(1, round(img.width * scale)), face_height), Image.LANCZOS)
    canvas = Image.new("RGB", size, (128, 128, 128))
    canvas.paste(img, ((size[0] - img.width) // 2, (size[1] - img.height) // 2))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=92)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gate_frame", description=__doc__)
    parser.add_argument("photo", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    args.out.write_bytes(live_frame(np.asarray(Image.open(args.photo).convert("RGB"))))
    print(f"wrote {args.out} ({FRAME[0]}x{FRAME[1]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
