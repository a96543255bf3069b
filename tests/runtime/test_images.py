"""The shared image decoder: every bad-input kind gets the right error; good input decodes as seen."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from services.runtime.errors import InvalidArgument, ResourceExhausted
from services.runtime.images import decode_image, sniff_format

LIMITS = {"max_bytes": 5 * 1024 * 1024, "max_pixels": 10_000_000}


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def gradient(w: int = 64, h: int = 48) -> Image.Image:
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    arr[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    return Image.fromarray(arr)


@pytest.mark.parametrize(
    "fmt,sniffed", [("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WEBP"), ("JPEG2000", "JPEG2000")]
)
def test_each_supported_format_decodes_to_rgb(fmt: str, sniffed: str) -> None:
    data = encode(gradient(), fmt)
    assert sniff_format(data) == sniffed
    rgb = decode_image(data, **LIMITS)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert rgb[:, -1, 0].mean() > 200 and rgb[:, 0, 0].mean() < 50  # red ramps left to right


def test_raw_jpeg2000_codestream_is_accepted() -> None:
    data = encode(gradient(), "JPEG2000", no_jp2=True)
    assert data[:4] == b"\xff\x4f\xff\x51"
    assert decode_image(data, **LIMITS).shape == (48, 64, 3)


def test_exif_orientation_is_applied() -> None:
    img = gradient(64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    rgb = decode_image(encode(img, "JPEG", exif=exif), **LIMITS)
    assert rgb.shape == (64, 48, 3)


def test_grey_palette_and_alpha_images_become_rgb() -> None:
    grey = decode_image(encode(gradient().convert("L"), "PNG"), **LIMITS)
    assert grey.shape == (48, 64, 3)
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    flat = decode_image(encode(rgba, "PNG"), **LIMITS)
    assert (flat == 255).all()  # transparent composites over white


def test_empty_input() -> None:
    with pytest.raises(InvalidArgument, match="empty"):
        decode_image(b"", **LIMITS)


def test_non_image_bytes() -> None:
    with pytest.raises(InvalidArgument, match="unsupported or unrecognised"):
        decode_image(b"%PDF-1.7 definitely not a photo", **LIMITS)


def test_unsupported_image_format() -> None:
    with pytest.raises(InvalidArgument, match="unsupported"):
        decode_image(encode(gradient(), "GIF"), **LIMITS)
    with pytest.raises(InvalidArgument, match="unsupported"):
        decode_image(encode(gradient(), "BMP"), **LIMITS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "JPEG2000"])
def test_truncated_image(fmt: str) -> None:
    data = encode(gradient(256, 256), fmt)
    with pytest.raises(InvalidArgument, match=r"truncated|corrupt"):
        decode_image(data[: len(data) // 2], **LIMITS)


def test_corrupt_image_body() -> None:
    data = bytearray(encode(gradient(256, 256), "PNG"))
    data[60:200] = b"\x00" * 140
    with pytest.raises(InvalidArgument, match="corrupt"):
        decode_image(bytes(data), **LIMITS)


def test_too_many_bytes() -> None:
    data = encode(gradient(), "PNG")
    with pytest.raises(ResourceExhausted, match=f"{len(data)} bytes; the limit is 100 bytes"):
        decode_image(data, max_bytes=100, max_pixels=10_000_000)


def test_too_many_pixels_is_refused_before_decoding() -> None:
    # A 20000 x 20000 PNG of one colour is tiny on the wire but 1.2 GB decoded.
    data = encode(Image.new("L", (20000, 20000)), "PNG")
    assert len(data) < LIMITS["max_bytes"]
    with pytest.raises(ResourceExhausted, match="20000x20000"):
        decode_image(data, **LIMITS)


def test_format_hint_must_agree_with_bytes() -> None:
    with pytest.raises(InvalidArgument, match="hint says PNG but the bytes are JPEG"):
        decode_image(encode(gradient(), "JPEG"), format_hint="PNG", **LIMITS)
