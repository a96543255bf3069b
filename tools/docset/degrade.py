"""How each document source degrades a portrait: chip compression to a byte budget, and print-and-scan.

Chip (DG2): ICAO 9303 chips hold one ISO/IEC 19794-5 image of about 12-20 kB, JPEG or JPEG 2000;
the encoder's quality is searched (bisection) until the file lands inside that band.

Print and scan (the photo page): the portrait is printed with an amplitude-modulated halftone
screen (cyan, magenta, yellow at the classic 15/75/0 degree angles, dots a little over a page pixel
apart, so the scan integrates them into moire and grain), with the printer's colour shift, under
the page's guilloche security lines, then scanned (optical blur, sensor noise). The parameters are
drawn per document from ``rng`` within the ranges below.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

#: A chip portrait's byte band (the issue's 12-20 kB).
CHIP_MIN_BYTES = 12_000
CHIP_MAX_BYTES = 20_000
SCREEN_ANGLES = (15.0, 75.0, 0.0)  # cyan, magenta, yellow


def _jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _jp2(img: Image.Image, rate: float) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG2000", irreversible=True, quality_mode="rates", quality_layers=[rate])
    return out.getvalue()


def chip_jpeg(img: Image.Image, target: int) -> bytes:
    """The highest-quality JPEG of at most ``target`` bytes (and at least CHIP_MIN_BYTES if reachable)."""
    lo, hi, best = 5, 95, _jpeg(img, 5)
    while lo <= hi:
        q = (lo + hi) // 2
        data = _jpeg(img, q)
        if len(data) <= target:
            best, lo = data, q + 1
        else:
            hi = q - 1
    return best


def chip_jpeg2000(img: Image.Image, target: int) -> bytes:
    """A JPEG 2000 codestream-in-JP2 of at most ``target`` bytes: the compression rate is searched."""
    lo, hi = 1.0, 400.0  # compression ratios
    best = _jp2(img, hi)
    for _ in range(24):
        mid = (lo + hi) / 2
        data = _jp2(img, mid)
        if len(data) <= target:
            best, hi = data, mid
        else:
            lo = mid
        if target - 600 <= len(best) <= target:
            break
    return best


def _halftone_channel(values: np.ndarray, angle: float, period: float) -> np.ndarray:
    """Clustered-dot AM screen of one ink (0 = no ink, 1 = full) at ``period`` px and ``angle``."""
    h, w = values.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    t = np.radians(angle)
    u = (xx * np.cos(t) + yy * np.sin(t)) * 2 * np.pi / period
    v = (-xx * np.sin(t) + yy * np.cos(t)) * 2 * np.pi / period
    screen = 0.5 - 0.25 * (np.cos(u) + np.cos(v))  # 0..1, dot centres low
    return (values > screen).astype(np.float64)


def print_portrait(img: Image.Image, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """The portrait as printed on the page at ``size`` page pixels: colour shift, then halftone."""
    up = 4  # screen at 4x the page resolution, then average back (the scanner's pixel)
    big = img.convert("RGB").resize((size[0] * up, size[1] * up), Image.LANCZOS)
    rgb = np.asarray(big, dtype=np.float64) / 255.0
    gain = rng.uniform(0.9, 1.08, 3)
    rgb = np.clip(rgb * gain + rng.uniform(-0.04, 0.04, 3), 0, 1) ** rng.uniform(0.85, 1.15)
    period = rng.uniform(4.5, 7.0)  # 1.1-1.75 page px between dots
    ink = 1.0 - rgb  # C, M, Y
    printed = np.stack(
        [1.0 - _halftone_channel(ink[..., i], SCREEN_ANGLES[i], period) for i in range(3)], axis=-1
    )
    out = Image.fromarray((printed * 255).astype(np.uint8))
    return out.resize(size, Image.BOX)


def guilloche(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A 0..1 mask of fine interleaved sine lines, like a document's security background."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    lines = np.zeros((h, w))
    for _ in range(2):
        freq = rng.uniform(0.02, 0.05)
        amp = rng.uniform(3, 9)
        spacing = rng.uniform(5, 9)
        phase = yy + amp * np.sin(2 * np.pi * freq * xx + rng.uniform(0, 2 * np.pi))
        lines = np.maximum(lines, np.clip(1.0 - np.abs((phase % spacing) - spacing / 2) / 0.7, 0, 1))
    return lines


def overlay_security(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Guilloche lines printed over the portrait in a light tint, as on a data page."""
    lines = guilloche(img.size, rng)[..., None] * rng.uniform(0.18, 0.3)
    tint = np.asarray(rng.uniform(120, 220, 3))
    rgb = np.asarray(img.convert("RGB"), dtype=np.float64)
    return Image.fromarray(np.clip(rgb * (1 - lines) + tint * lines, 0, 255).astype(np.uint8))


def scan(page: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The scanner: optical blur and sensor noise over the whole page."""
    blurred = page.convert("RGB").filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.1)))
    rgb = np.asarray(blurred, dtype=np.float64)
    rgb = rgb + rng.normal(0, rng.uniform(1.5, 4.0), rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
