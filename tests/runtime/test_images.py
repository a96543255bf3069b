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


#: Largest mean absolute difference (0-255) a lossy codec may leave on the smooth test images.
LOSSY_TOLERANCE = {"JPEG": 3.0, "WEBP": 4.0, "JPEG2000": 3.0, "PNG": 0.0}


def assert_pixels_close(got: np.ndarray, want: np.ndarray, fmt: str) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8
    error = np.abs(got.astype(np.int16) - want.astype(np.int16)).mean()
    assert error <= LOSSY_TOLERANCE[fmt], f"{fmt}: mean error {error:.2f} over {LOSSY_TOLERANCE[fmt]}"


@pytest.mark.parametrize(
    "fmt,sniffed", [("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WEBP"), ("JPEG2000", "JPEG2000")]
)
def test_each_supported_format_decodes_to_rgb(fmt: str, sniffed: str) -> None:
    data = encode(gradient(), fmt)
    assert sniff_format(data) == sniffed
    rgb = decode_image(data, **LIMITS)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert rgb[:, -1, 0].mean() > 200 and rgb[:, 0, 0].mean() < 50  # red ramps left to right
    assert_pixels_close(rgb, np.asarray(gradient()), fmt)  # and every pixel is where it was


def test_raw_jpeg2000_codestream_is_accepted() -> None:
    data = encode(gradient(), "JPEG2000", no_jp2=True)
    assert data[:4] == b"\xff\x4f\xff\x51"
    assert_pixels_close(decode_image(data, **LIMITS), np.asarray(gradient()), "JPEG2000")


#: A scene as a person should see it: grey, with red top-left, green top-right, blue bottom-left
#: blocks, so that each of the eight EXIF orientations puts the blocks somewhere different.
SCENE_H, SCENE_W, BLOCK = 48, 64, 16
RED, GREEN, BLUE, GREY = (220, 30, 30), (30, 200, 30), (30, 30, 220), (128, 128, 128)


def scene() -> np.ndarray:
    arr = np.full((SCENE_H, SCENE_W, 3), GREY, dtype=np.uint8)
    arr[:BLOCK, :BLOCK] = RED
    arr[:BLOCK, -BLOCK:] = GREEN
    arr[-BLOCK:, :BLOCK] = BLUE
    return arr


#: EXIF orientation -> how the camera stored a scene (the inverse of what a viewer applies to
#: display it; TIFF/EXIF 2.32 tag 0x0112).
STORED_AS = {
    1: lambda a: a,  # as seen
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1, :],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, 1),  # viewer turns it 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the other diagonal
    8: lambda a: np.rot90(a, -1),  # viewer turns it 90 degrees counter-clockwise
}


def block_colour(rgb: np.ndarray, corner: str) -> np.ndarray:
    """Mean colour of the centre of the corner block (away from JPEG ringing at its edges)."""
    inner = slice(BLOCK // 4, 3 * BLOCK // 4)
    outer = slice(-3 * BLOCK // 4, -BLOCK // 4)
    rows = inner if corner[0] == "t" else outer
    cols = inner if corner[1] == "l" else outer
    return rgb[rows, cols].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_exif_orientation_is_applied(orientation: int) -> None:
    seen = scene()
    stored = np.ascontiguousarray(STORED_AS[orientation](seen))
    if orientation != 1:
        assert stored.shape != seen.shape or not np.array_equal(stored, seen)  # the test can tell
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(stored), "JPEG", exif=exif, quality=95)
    rgb = decode_image(data, **LIMITS)
    assert rgb.shape == (SCENE_H, SCENE_W, 3)
    for corner, colour in (("tl", RED), ("tr", GREEN), ("bl", BLUE), ("br", GREY)):
        assert np.abs(block_colour(rgb, corner) - colour).max() < 12, (orientation, corner)
    assert_pixels_close(rgb, seen, "JPEG")


def test_grey_palette_and_alpha_images_become_rgb() -> None:
    source = gradient()
    grey = decode_image(encode(source.convert("L"), "PNG"), **LIMITS)
    assert grey.shape == (48, 64, 3)
    expected_grey = np.asarray(source.convert("L"))
    assert all(np.array_equal(grey[..., c], expected_grey) for c in range(3))  # grey copied to R, G, B
    palette = source.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert np.array_equal(decode_image(encode(palette, "PNG"), **LIMITS), np.asarray(palette.convert("RGB")))
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    flat = decode_image(encode(rgba, "PNG"), **LIMITS)
    assert (flat == 255).all()  # transparent composites over white
    half = decode_image(encode(Image.new("RGBA", (10, 10), (200, 0, 0, 128)), "PNG"), **LIMITS)
    assert np.abs(half.astype(int) - (227, 127, 127)).max() <= 1  # half-opaque red over white


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


def _pillow_rgb(data: bytes) -> np.ndarray:
    """The reference decode: Pillow all the way (what decode_image did before its JPEG fast path)."""
    from PIL import ImageOps

    img = Image.open(io.BytesIO(data))
    img.load()
    return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def _photo() -> Image.Image:
    from tests.support import FACES

    return Image.open(FACES / "images" / "Zhu_Rongji" / "Zhu_Rongji_0001.jpg").convert("RGB")


@pytest.mark.parametrize(
    "variant",
    [
        {"quality": 92},  # the kiosk's kind: baseline, 4:2:0
        {"quality": 90, "progressive": True},
        {"quality": 80, "subsampling": 0},  # 4:4:4
        {"quality": 90, "grey": True},
    ],
    ids=["baseline", "progressive", "444", "grey"],
)
def test_jpeg_fast_path_gives_pillows_pixels_exactly(variant: dict) -> None:
    """The OpenCV decode the fast path uses must not move a pixel: crops and templates depend on it."""
    from services.runtime.images import _decode_jpeg_fast

    pytest.importorskip("cv2")  # the fast path runs where the process uses OpenCV (detection)

    kw = dict(variant)
    img = _photo().resize((640, 360)).convert("L" if kw.pop("grey", False) else "RGB")
    data = encode(img, "JPEG", **kw)
    assert _decode_jpeg_fast(data, Image.open(io.BytesIO(data))) is not None  # the fast path is taken
    got = decode_image(data, **LIMITS)
    assert got.shape == (360, 640, 3) and got.dtype == np.uint8
    assert np.array_equal(got, _pillow_rgb(data))


def test_jpeg_cases_the_fast_path_leaves_to_pillow() -> None:
    """Rotated (EXIF), CMYK, trailing bytes after EOI: Pillow decodes them, as before."""
    from services.runtime.images import _decode_jpeg_fast

    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = encode(_photo(), "JPEG", exif=exif)
    cmyk = encode(_photo().convert("CMYK"), "JPEG", quality=95)
    trailing = encode(_photo(), "JPEG") + b"camera maker's trailer"
    for data in (rotated, cmyk, trailing):
        assert _decode_jpeg_fast(data, Image.open(io.BytesIO(data))) is None
        assert np.array_equal(decode_image(data, **LIMITS), _pillow_rgb(data))
    assert decode_image(rotated, **LIMITS).shape == (150, 150, 3)
    assert_pixels_close(decode_image(cmyk, **LIMITS), np.asarray(_photo()), "JPEG")


def test_without_opencv_loaded_pillow_decodes(monkeypatch) -> None:
    """The slim servers never import OpenCV: there, every JPEG takes Pillow's path."""
    import sys

    from services.runtime.images import _decode_jpeg_fast

    monkeypatch.delitem(sys.modules, "cv2", raising=False)
    data = encode(_photo(), "JPEG")
    assert _decode_jpeg_fast(data, Image.open(io.BytesIO(data))) is None
    assert np.array_equal(decode_image(data, **LIMITS), _pillow_rgb(data))


def test_truncated_jpeg_given_a_fake_eoi_decodes_as_pillow_decodes_it() -> None:
    """A stream cut short and closed with an EOI marker: Pillow (libjpeg) fills the missing rows
    and answers an image; the fast path must answer the very same pixels, not something else."""
    data = encode(gradient(256, 256), "JPEG")
    forged = data[: len(data) // 2] + b"\xff\xd9"
    assert np.array_equal(decode_image(forged, **LIMITS), _pillow_rgb(forged))
