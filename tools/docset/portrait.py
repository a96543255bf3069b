"""An ICAO-style document portrait from an ordinary face photo: crop, framing, plain background.

Geometry is ISO/IEC 19794-5's *token frontal* image: width W, height 4W/3, the eyes level, their
midpoint at (W/2, 0.6 W) from the top and 0.25 W apart. The eye positions come from MTCNN's
landmarks (the detection service), so roll is taken out by the same rotation.

Background: a real cut-out (a segmentation model) is not among the project's dependencies, so the
face is kept inside a soft matte made of two ellipses - the head (face box widened for hair and
ears, raised for the crown) and the neck and shoulders below the chin - and everything outside it
is replaced by a light grey-beige, as on a passport photo. Limits: hair outside the ellipse is cut
off, background inside it stays (LFW news backgrounds show round the cheeks), and shoulders are a
smooth oval rather than the person's outline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

#: ISO/IEC 19794-5 token frontal: eye distance / width, eye line / width (from the top), height / width.
EYE_DISTANCE = 0.25
EYE_LINE = 0.6
ASPECT = 4 / 3
#: Widths drawn from, px. ISO/IEC 19794-5 token images need >= 240 (60 px between the eyes); the
#: smaller ones (20-50 px between the eyes) are there because portraits that small do reach the
#: gate (older chips, the project's own 150 px test portraits) and their threshold must be
#: calibrated, not guessed (issue 17: thresholds per band of portrait size).
WIDTHS = (80, 100, 125, 150, 200, 240, 300, 360, 420, 480)


@dataclass(frozen=True)
class FaceGeometry:
    """What the renderer needs of a detected face, in source pixels."""

    box: tuple[float, float, float, float]  # x, y, width, height
    left_eye: tuple[float, float]  # image-left
    right_eye: tuple[float, float]


def token_frontal(photo: Image.Image, face: FaceGeometry, width: int) -> tuple[Image.Image, FaceGeometry]:
    """The photo rotated, scaled and cropped to the token geometry; also the face in the new frame."""
    (lx, ly), (rx, ry) = face.left_eye, face.right_eye
    angle = np.degrees(np.arctan2(ry - ly, rx - lx))
    scale = EYE_DISTANCE * width / max(np.hypot(rx - lx, ry - ly), 1.0)
    height = round(width * ASPECT)
    cx, cy = (lx + rx) / 2, (ly + ry) / 2
    # Affine from output to source: rotate by +angle about the eye midpoint, scale by 1/scale.
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    ox, oy = width / 2, EYE_LINE * width
    a, b = cos / scale, -sin / scale
    d, e = sin / scale, cos / scale
    c = cx - a * ox - b * oy
    f = cy - d * ox - e * oy
    out = photo.transform(
        (width, height), Image.AFFINE, (a, b, c, d, e, f), resample=Image.BICUBIC, fillcolor=(128, 128, 128)
    )

    def forward(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return (ox + scale * (cos * dx + sin * dy), oy + scale * (-sin * dx + cos * dy))

    bx, by, bw, bh = face.box
    x0, y0 = forward(bx + bw / 2, by + bh / 2)
    box = (x0 - bw * scale / 2, y0 - bh * scale / 2, bw * scale, bh * scale)
    return out, FaceGeometry(box, forward(lx, ly), forward(rx, ry))


def matte(size: tuple[int, int], face: FaceGeometry, feather: float) -> Image.Image:
    """A soft 0-255 mask: head ellipse plus a neck-and-shoulders ellipse below the chin."""
    w, h = size
    bx, by, bw, bh = face.box
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    hcx, hcy = bx + bw / 2, by + bh * 0.42
    head = ((xx - hcx) / (bw * 0.68)) ** 2 + ((yy - hcy) / (bh * 0.78)) ** 2 <= 1.0
    neck = ((xx - hcx) / (bw * 0.42)) ** 2 + ((yy - (by + bh * 1.05)) / (bh * 0.4)) ** 2 <= 1.0
    shoulders = ((xx - hcx) / (bw * 1.25)) ** 2 + ((yy - (by + bh * 1.75)) / (bh * 0.55)) ** 2 <= 1.0
    mask = Image.fromarray(((head | neck | shoulders) * 255).astype(np.uint8))
    return mask.filter(ImageFilter.GaussianBlur(feather))


def render(
    photo: Image.Image, face: FaceGeometry, width: int, background: tuple[int, int, int]
) -> Image.Image:
    """The ICAO-style portrait: token geometry, the person on a plain light background."""
    framed, moved = token_frontal(photo.convert("RGB"), face, width)
    plain = Image.new("RGB", framed.size, background)
    return Image.composite(framed, plain, matte(framed.size, moved, feather=width / 80))
