"""Build DG2 byte strings the way a chip holds them (ICAO 9303 Part 10, ISO/IEC 19794-5:2005).

Written independently of the parser (plain byte concatenation, DER lengths) so the tests check the
parser against the standard's layout rather than against itself.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

from PIL import Image


def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    return tag_bytes + der_length(len(value)) + value


def encode_portrait(path: Path, fmt: str, size: tuple[int, int] | None = None) -> bytes:
    """A real portrait re-encoded as a chip would store it (JPEG or JPEG 2000)."""
    img = Image.open(path).convert("RGB")
    if size:
        img = img.resize(size, Image.LANCZOS)
    out = io.BytesIO()
    if fmt == "JPEG":
        img.save(out, format="JPEG", quality=85)
    else:
        img.save(out, format="JPEG2000", irreversible=True, quality_mode="rates", quality_layers=[20])
    return out.getvalue()


def facial_image_block(
    image: bytes,
    *,
    width: int,
    height: int,
    data_type: int,
    feature_points: int = 1,
    block_len_delta: int = 0,
) -> bytes:
    info = struct.pack(
        ">HBBB3sH3s3s",
        feature_points,
        2,  # gender: female
        1,  # eye colour: black
        3,  # hair colour: blonde
        b"\x00\x00\x01",  # property mask: features specified
        1,  # expression: neutral
        bytes([1, 1, 1]),  # pose yaw, pitch, roll: 0 degrees (encoded as 1)
        b"\x00\x00\x00",
    )
    points = b"".join(
        struct.pack(">BBHHH", 1, 0x0C, 100 + i, 120 + i, 0) for i in range(feature_points)
    )  # type 1, MPEG-4 point 12.1 style code
    image_info = struct.pack(">BBHHBBHH", 1, data_type, width, height, 1, 2, 0, 0)
    body = info + points + image_info + image
    return struct.pack(">I", 4 + len(body) + block_len_delta) + body


def facial_record(blocks: list[bytes], *, record_len_delta: int = 0, version: bytes = b"010\x00") -> bytes:
    body = b"".join(blocks)
    total = 14 + len(body)
    return b"FAC\x00" + version + struct.pack(">IH", total + record_len_delta, len(blocks)) + body


def biometric_header() -> bytes:
    return b"".join(
        [
            tlv(0x80, b"\x01\x01"),  # ICAO header version
            tlv(0x81, b"\x02"),  # biometric type: facial features
            tlv(0x82, b"\x00"),  # subtype: none
            tlv(0x87, b"\x01\x01"),  # format owner: ISO/IEC JTC 1/SC 37
            tlv(0x88, b"\x00\x08"),  # format type: face image
        ]
    )


def dg2(records: list[bytes], *, bdb_tag: int = 0x5F2E) -> bytes:
    templates = b"".join(tlv(0x7F60, tlv(0xA1, biometric_header()) + tlv(bdb_tag, r)) for r in records)
    group = tlv(0x02, bytes([len(records)])) + templates
    return tlv(0x75, tlv(0x7F61, group))


def dg2_for_image(image: bytes, fmt: str, width: int, height: int, **kwargs: int) -> bytes:
    data_type = 0 if fmt == "JPEG" else 1
    return dg2(
        [
            facial_record(
                [facial_image_block(image, width=width, height=height, data_type=data_type, **kwargs)]
            )
        ]
    )
