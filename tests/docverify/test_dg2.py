"""DG2 parsing against byte strings built per ICAO 9303 / ISO 19794-5 from a real portrait, and fuzzing."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from PIL import Image

from services.docverify.dg2 import Dg2Error, parse_dg2
from services.runtime.images import decode_image, sniff_format
from tests.docverify.dg2_builder import (
    dg2,
    dg2_for_image,
    encode_portrait,
    facial_image_block,
    facial_record,
    tlv,
)
from tests.support import FACES

PORTRAIT = FACES / "images" / "Ai_Sugiyama" / "Ai_Sugiyama_0001.jpg"
LIMIT = 1 << 20


@pytest.fixture(scope="module", params=["JPEG", "JPEG2000"])
def encoded(request):
    fmt = request.param
    return fmt, encode_portrait(PORTRAIT, fmt)


@pytest.fixture(scope="module")
def small_jpeg():
    """A small real portrait, so that cutting at every byte stays quick."""
    return encode_portrait(PORTRAIT, "JPEG", size=(60, 75))


def test_round_trip_extracts_image_and_declared_properties(encoded):
    fmt, image = encoded
    width, height = Image.open(PORTRAIT).size  # LFW files here are 150x150
    data = dg2_for_image(image, fmt, width, height, feature_points=3)
    parsed = parse_dg2(data, max_bytes=LIMIT)
    assert parsed.instances == 1
    face = parsed.primary
    assert face.image == image
    assert face.image_format == fmt
    assert (face.width, face.height) == (width, height)
    assert face.feature_points == 3
    assert face.face_image_type == 1  # full frontal
    assert (face.gender, face.eye_colour, face.hair_colour, face.expression) == (2, 1, 3, 1)
    assert (face.pose_yaw, face.pose_pitch, face.pose_roll) == (1, 1, 1)
    rgb = decode_image(face.image, max_bytes=LIMIT, max_pixels=10**7)
    assert rgb.shape == (height, width, 3)
    # and it is the portrait, upright: the lossy re-encode moves pixels by a few levels (measured
    # 1.7 for JPEG, 4.6 for JPEG 2000), a flipped or other photo by about 50
    source = np.asarray(Image.open(PORTRAIT).convert("RGB"), dtype=np.int16)
    assert np.abs(rgb.astype(np.int16) - source).mean() < 10


def test_several_instances_and_images_keep_chip_order(small_jpeg):
    jp2 = encode_portrait(PORTRAIT, "JPEG2000", size=(60, 75))
    first = facial_record(
        [
            facial_image_block(small_jpeg, width=60, height=75, data_type=0),
            facial_image_block(jp2, width=60, height=75, data_type=1, feature_points=0),
        ]
    )
    second = facial_record([facial_image_block(jp2, width=60, height=75, data_type=1)])
    parsed = parse_dg2(dg2([first, second]), max_bytes=LIMIT)
    assert parsed.instances == 2
    assert [i.image_format for i in parsed.images] == ["JPEG", "JPEG2000", "JPEG2000"]
    assert parsed.primary.image == small_jpeg


def test_constructed_data_block_tag_7f2e_is_read(small_jpeg):
    record = facial_record([facial_image_block(small_jpeg, width=60, height=75, data_type=0)])
    assert parse_dg2(dg2([record], bdb_tag=0x7F2E), max_bytes=LIMIT).primary.image == small_jpeg


def test_long_form_lengths_are_accepted(encoded):
    fmt, image = encoded
    data = dg2_for_image(image, fmt, 150, 150)
    assert len(image) > 255  # the outer templates use 0x82 two-byte lengths
    assert data[1] == 0x82
    assert parse_dg2(data, max_bytes=LIMIT).primary.image == image


def _block(image, **kw):
    return facial_image_block(image, width=60, height=75, data_type=kw.pop("data_type", 0), **kw)


def _bit(record: bytes, header: bytes | None = None) -> bytes:
    header = tlv(0xA1, tlv(0x81, b"\x02") + tlv(0x87, b"\x01\x01")) if header is None else header
    return tlv(0x7F60, header + tlv(0x5F2E, record))


def _wrap(templates: bytes, count: int = 1) -> bytes:
    return tlv(0x75, tlv(0x7F61, tlv(0x02, bytes([count])) + templates))


def _malformed_cases(image: bytes) -> list[tuple[str, bytes, str]]:
    good_record = facial_record([_block(image)])
    good = _wrap(_bit(good_record))
    jp2 = encode_portrait(PORTRAIT, "JPEG2000", size=(60, 75))
    body = good[4:]  # after 75 82 hi lo
    return [
        ("empty", b"", "empty"),
        ("wrong outer tag", b"\x76" + good[1:], "must start with tag 75, found 76"),
        ("trailing byte", good + b"\x00", "unexpected byte(s) after the DG2"),
        ("outer length one short", good[:2] + (len(body) - 1).to_bytes(2, "big") + body, "unexpected byte"),
        ("outer length one long", good[:2] + (len(body) + 1).to_bytes(2, "big") + body, "declares"),
        ("huge 4-byte length", b"\x75\x84\xff\xff\xff\xff" + body, "declares 4294967295 bytes but only"),
        ("5-byte length field", b"\x75\x85\x00\x00\x00\x00\x10" + body, "5-byte length field"),
        ("indefinite length", b"\x75\x80" + body + b"\x00\x00", "indefinite length"),
        ("length cut off", b"\x75\x82\x01", "length of tag 75 is cut off"),
        ("tag cut off", b"\x75\x01\x7f", "tag is cut off"),
        ("overlong tag", b"\x75\x06\x7f\xff\xff\xff\x01\x00", "longer than 4 bytes"),
        ("no 7F61", tlv(0x75, tlv(0x7F62, b"")), "one 7F61 template, found 0"),
        ("primitive where template expected", tlv(0x75, tlv(0x5F61, b"\x01")), "one 7F61"),
        ("missing count", tlv(0x75, tlv(0x7F61, _bit(good_record))), "instance count (tag 02)"),
        ("count says 2, one template", _wrap(_bit(good_record), count=2), "says 2 x 7F60"),
        ("count zero", _wrap(b"", count=0), "instance count 0"),
        ("2-byte count", tlv(0x75, tlv(0x7F61, tlv(0x02, b"\x00\x01") + _bit(good_record))), "1 byte"),
        ("wrong template tag", _wrap(tlv(0x7F70, b"")), "holds 7F70"),
        ("no header", _wrap(tlv(0x7F60, tlv(0x5F2E, good_record))), "must hold A1 then 5F2E"),
        ("fingerprint type", _wrap(_bit(good_record, tlv(0xA1, tlv(0x81, b"\x08")))), "not facial features"),
        ("other format owner", _wrap(_bit(good_record, tlv(0xA1, tlv(0x87, b"\x02\x01")))), "format owner"),
        ("not a FAC record", _wrap(_bit(b"FIR\x00" + good_record[4:])), "not an ISO/IEC 19794-5"),
        ("empty data block", _wrap(_bit(b"")), "not an ISO/IEC 19794-5"),
        ("short header", _wrap(_bit(b"FAC\x00010")), "shorter than its 14-byte header"),
        (
            "2011 version",
            _wrap(_bit(facial_record([_block(image)], version=b"030\x00"))),
            "not ISO/IEC 19794-5:2005",
        ),
        (
            "record length too long",
            _wrap(_bit(facial_record([_block(image)], record_len_delta=1))),
            "length field",
        ),
        (
            "record length too short",
            _wrap(_bit(facial_record([_block(image)], record_len_delta=-1))),
            "length field",
        ),
        ("zero images", _wrap(_bit(b"FAC\x00010\x00" + struct.pack(">IH", 14, 0))), "declares 0 images"),
        ("block length too long", _wrap(_bit(facial_record([_block(image, block_len_delta=1)]))), "exceeds"),
        (
            "block length too short",
            _wrap(_bit(facial_record([_block(image, block_len_delta=-1)]))),
            "after the last",
        ),
        ("huge feature point count", _wrap(_bit(_huge_points(image))), "leaves no image data"),
        (
            "image data type 2",
            _wrap(_bit(facial_record([_block(image, data_type=2)]))),
            "neither JPEG (0) nor JPEG 2000 (1)",
        ),
        (
            "declared JPEG, bytes JP2",
            _wrap(_bit(facial_record([_block(jp2, data_type=0)]))),
            "declared JPEG but the image bytes are JPEG2000",
        ),
        (
            "declared JP2, bytes garbage",
            _wrap(_bit(facial_record([_block(b"\x00" * 64, data_type=1)]))),
            "not a known image format",
        ),
        (
            "zero width",
            _wrap(_bit(facial_record([facial_image_block(image, width=0, height=75, data_type=0)]))),
            "is empty",
        ),
    ]


def _huge_points(image: bytes) -> bytes:
    block = bytearray(_block(image, feature_points=0))
    block[4:6] = (0xFFFF).to_bytes(2, "big")  # 65535 feature points: far more than the block holds
    return facial_record([bytes(block)])


def test_malformed_cases_are_rejected_precisely(small_jpeg):
    for name, data, fragment in _malformed_cases(small_jpeg):
        with pytest.raises(Dg2Error) as info:
            parse_dg2(data, max_bytes=LIMIT)
        assert fragment in info.value.message, f"{name}: {info.value.message}"


def test_oversized_dg2_is_refused_before_parsing(small_jpeg):
    data = dg2_for_image(small_jpeg, "JPEG", 60, 75)
    with pytest.raises(Dg2Error, match="limit is 100 bytes"):
        parse_dg2(data, max_bytes=100)


def test_truncated_at_every_cut_point_is_rejected(small_jpeg):
    data = dg2_for_image(small_jpeg, "JPEG", 60, 75)
    for cut in range(len(data)):
        with pytest.raises(Dg2Error):
            parse_dg2(data[:cut], max_bytes=LIMIT)


def _check_consistent(parsed, data: bytes) -> None:
    """A mutated DG2 that still parses must describe real bytes of the input, in a declared format."""
    assert parsed.images
    for face in parsed.images:
        assert face.image and face.image in data
        assert sniff_format(face.image) == face.image_format
        assert face.width > 0 and face.height > 0


@pytest.mark.parametrize("fmt", ["JPEG", "JPEG2000"])
def test_random_mutations_are_rejected_cleanly_or_parsed_consistently(fmt):
    image = encode_portrait(PORTRAIT, fmt, size=(60, 75))
    data = dg2_for_image(image, fmt, 60, 75, feature_points=2)
    header_span = len(data) - len(image)  # mutate the structure more often than the image bytes
    rng = random.Random(20261128)
    outcomes = {"rejected": 0, "parsed": 0}
    for _ in range(3000):
        mutated = bytearray(data)
        kind = rng.random()
        if kind < 0.6:  # flip 1-3 bytes, mostly in the TLV / record headers
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(header_span) if rng.random() < 0.8 else rng.randrange(len(mutated))
                mutated[at] = rng.randrange(256)
        elif kind < 0.8:  # delete a byte range
            at = rng.randrange(len(mutated))
            del mutated[at : at + rng.randint(1, 8)]
        else:  # insert random bytes
            at = rng.randrange(header_span)
            mutated[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        try:
            parsed = parse_dg2(bytes(mutated), max_bytes=LIMIT)
        except Dg2Error as exc:
            assert exc.message.startswith("DG2 ")
            outcomes["rejected"] += 1
        else:
            _check_consistent(parsed, bytes(mutated))
            outcomes["parsed"] += 1
    assert outcomes["rejected"] > 1000  # most structural damage must be caught
