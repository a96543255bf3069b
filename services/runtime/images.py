"""The one image decoder every service uses, with limits checked before any pixel is decoded.

Returns RGB uint8 arrays in the orientation a person would see (EXIF applied), because
boxes and landmarks are reported in that frame.

Why JPEG has a second decoder: a kiosk sends a 1280x720 JPEG with every decision, and Pillow's
route to a numpy array cost three passes over the pixels beside the decode itself (its internal
4-byte layout unpacked to bytes, a copy in ``exif_transpose`` and another in ``convert("RGB")``;
the Pillow path below now skips those two when there is nothing to turn or convert). OpenCV's
``imdecode`` writes the decoded RGB straight into the array.
Measured: the detection service's per-call work outside MTCNN 7.2 -> 5.2 ms on the kiosk's two
concurrent calls (shared 2-core machine; the kiosk report's notes, bench/bench_kiosk.py). Both
are libjpeg-turbo with the same defaults (integer IDCT, fancy upsampling), and the pixels are
identical (tested on the dev photos and gate frames), so nothing downstream changes. Pillow still
reads the header first (format, size, the pixel limit, EXIF orientation) and decodes every case the
fast path does not take: an EXIF rotation, CMYK, a stream that does not end in EOI (a truncated
upload keeps Pillow's precise "truncated" error), and anything OpenCV refuses.
"""

from __future__ import annotations

import io
import sys
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from facegate.v1 import common_pb2
from services.runtime.errors import FacegateError, InvalidArgument, ResourceExhausted

# We enforce our own pixel limit (below) before decoding, with a precise error.
Image.MAX_IMAGE_PIXELS = None

#: The one map between the contract's ImageFormat hints and the decoder's format names.
FORMAT_OF_HINT: dict[int, str | None] = {
    common_pb2.IMAGE_FORMAT_UNSPECIFIED: None,
    common_pb2.IMAGE_FORMAT_JPEG: "JPEG",
    common_pb2.IMAGE_FORMAT_PNG: "PNG",
    common_pb2.IMAGE_FORMAT_WEBP: "WEBP",
    common_pb2.IMAGE_FORMAT_JPEG2000: "JPEG2000",
}
HINT_OF_FORMAT: dict[str, int] = {name: hint for hint, name in FORMAT_OF_HINT.items() if name}
FORMATS = tuple(HINT_OF_FORMAT)
#: JPEG end-of-image marker: a stream that does not end in it goes to Pillow (see the docstring).
JPEG_EOI = b"\xff\xd9"
#: Pillow modes of a JPEG that OpenCV decodes to the same RGB pixels (YCbCr or RGB, and grey).
_FAST_JPEG_MODES = ("RGB", "L")


def sniff_format(data: bytes) -> str | None:
    """Identify the container from its magic bytes; None when it is none we accept."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or data[:4] == b"\xff\x4f\xff\x51":
        return "JPEG2000"
    return None


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    format_hint: str | None = None,
) -> np.ndarray:
    """Decode encoded image bytes to an H x W x 3 uint8 RGB array.

    Raises InvalidArgument for empty, unsupported, truncated or corrupt input and for a
    format hint that contradicts the bytes; ResourceExhausted when over a limit.
    """
    if not data:
        raise InvalidArgument("image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ResourceExhausted(f"image is {len(data)} bytes; the limit is {max_bytes} bytes")
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidArgument("unsupported or unrecognised image format; send JPEG, PNG, WebP or JPEG 2000")
    if format_hint and format_hint != fmt:
        raise InvalidArgument(f"format hint says {format_hint} but the bytes are {fmt}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = img.size
            if width <= 0 or height <= 0:
                raise InvalidArgument(f"{fmt} image declares an empty size {width}x{height}")
            if width * height > max_pixels:
                raise ResourceExhausted(
                    f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels"
                )
            fast = _decode_jpeg_fast(data, img) if fmt == "JPEG" else None
            if fast is not None:
                return fast
            img.load()
            img = _upright(img)
            rgb = _to_rgb(img)
    except (InvalidArgument, ResourceExhausted):
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        kind = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise InvalidArgument(f"{fmt} image data is {kind} and cannot be decoded") from None
    except Exception:  # any other decoder failure is still the caller's bad bytes
        raise InvalidArgument(f"{fmt} image data is corrupt and cannot be decoded") from None
    return np.asarray(rgb, dtype=np.uint8)


def decode_message(image: common_pb2.Image, *, max_bytes: int, max_pixels: int, what: str = "") -> np.ndarray:
    """Decode an ``Image`` message, honouring (and checking) its format hint.

    An unknown hint value is refused, never ignored. ``what`` (e.g. "page_scan") prefixes
    error messages so the caller learns which of its images was bad.
    """
    try:
        if image.format_hint not in FORMAT_OF_HINT:
            raise InvalidArgument(f"format_hint {image.format_hint} is not a known ImageFormat value")
        return decode_image(
            image.data,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
            format_hint=FORMAT_OF_HINT[image.format_hint],
        )
    except FacegateError as exc:
        if what:
            exc.message = f"{what}: {exc.message}"
        raise


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1, as stored, when there is none or it is unreadable)."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block is not worth refusing the photo for
        return 1
    return value if isinstance(value, int) else 1


def _upright(img: Image.Image) -> Image.Image:
    """The image as a person would see it; no copy when the EXIF orientation says "as stored"."""
    if _orientation(img) in (0, 1):
        return img
    return ImageOps.exif_transpose(img)


def _decode_jpeg_fast(data: bytes, header: Image.Image) -> np.ndarray | None:
    """RGB pixels of a plain JPEG in one pass (OpenCV), or None for Pillow to decode instead.

    Only where the process already uses OpenCV (detection: alignment, pose): the slim servers
    (gateway, docverify, watchlist) neither ship nor import it (tests/test_packaging.py), and decode
    the same pixels with Pillow.
    """
    cv2 = sys.modules.get("cv2")
    if cv2 is None or header.mode not in _FAST_JPEG_MODES or not data.endswith(JPEG_EOI):
        return None
    if _orientation(header) not in (0, 1):
        return None
    flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
    rgb = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if rgb is None or rgb.shape != (header.height, header.width, 3):
        return None
    return rgb


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten any mode (grey, palette, CMYK, 16-bit, alpha) to 8-bit RGB; alpha over white."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / peak)).astype(np.uint8), mode="L")
    return img if img.mode == "RGB" else img.convert("RGB")


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an RGB array losslessly (used for crops the services hand to each other)."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()
