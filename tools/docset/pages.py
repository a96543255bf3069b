"""The specimen photo pages as layouts: where each one's portrait sits, and pasting another there.

The portrait box is found the way docverify's page-scan path finds it (the largest face on the
page at least 20 px wide, as ``services.docverify.portrait`` asks detection) and cross-checked against the hand-marked portrait centre
in ``tests/docverify/data/specimens.json``; a layout whose largest face is not the marked portrait
is not used. The pasted portrait covers 1.55 x 2 face boxes round that face (about the printed photo), so
the specimen holder's main portrait is gone; the small ghost image some pages carry stays (it is
smaller, and docverify takes the largest face).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tools.docset import degrade

PHOTO_WIDTH, PHOTO_HEIGHT = 1.55, 2.0
SPECIMENS_JSON = Path(__file__).resolve().parents[2] / "tests" / "docverify" / "data" / "specimens.json"


@dataclass(frozen=True)
class Layout:
    """One specimen page and the region its main portrait occupies (x0, y0, x1, y1)."""

    file: str
    holder: str
    region: tuple[int, int, int, int]
    face_width: float


def specimens_with_portrait() -> list[dict]:
    specimens = json.loads(SPECIMENS_JSON.read_text())["specimens"]
    return [s for s in specimens if s.get("portrait_centre")]


def layout_from_face(spec: dict, box, page_size: tuple[int, int]) -> Layout | None:
    """The layout when the detected face is the marked portrait, else None."""
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    mx, my = spec["portrait_centre"]
    if abs(cx - mx) > box.width or abs(cy - my) > box.height:
        return None
    region = _region(box, page_size)
    return Layout(spec["file"], spec["holder"], region, float(box.width))


def _region(box, page_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The printed photo's box round the face: 1.55 x 2.0 face boxes (specimen photos are about that)."""
    w, h = box.width * PHOTO_WIDTH, box.height * PHOTO_HEIGHT
    x0 = max(0, round(box.x + box.width / 2 - w / 2))
    y0 = max(0, round(box.y + box.height / 2 - h * 0.45))
    return x0, y0, min(page_size[0], round(x0 + w)), min(page_size[1], round(y0 + h))


def paste(page: Image.Image, portrait: Image.Image, layout: Layout, rng: np.random.Generator) -> Image.Image:
    """The page with ``portrait`` printed into the layout's region, under the security lines, scanned."""
    x0, y0, x1, y1 = layout.region
    w, h = x1 - x0, y1 - y0
    # Fit the portrait's width to the region (its face then spans about the specimen face's width),
    # crop or pad the height about the portrait's centre.
    scale = w / portrait.width
    fitted = portrait.resize((w, max(1, round(portrait.height * scale))), Image.LANCZOS)
    top = max(0, (fitted.height - h) // 2)
    canvas = Image.new("RGB", (w, h), portrait.getpixel((2, 2)))
    canvas.paste(fitted.crop((0, top, w, top + min(h, fitted.height))), (0, max(0, (h - fitted.height) // 2)))
    printed = degrade.overlay_security(degrade.print_portrait(canvas, rng, (w, h)), rng)
    out = page.convert("RGB").copy()
    out.paste(printed, (x0, y0))
    return degrade.scan(out, rng)
