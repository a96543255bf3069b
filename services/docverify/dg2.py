"""ICAO 9303 LDS data group 2 (encoded face) and its ISO/IEC 19794-5:2005 facial record.

Layout (ICAO 9303 Part 10 §4.7.2; ISO/IEC 19794-5 §5):

    75 L                              DG2
      7F61 L                          biometric information group template
        02 01 n                       number of instances
        7F60 L   (n times)            biometric information template
          A1 L                        biometric header template: 80 version, 81 type (02 = face),
                                      82 subtype, 83 creation date, 85 validity, 86 creator,
                                      87 format owner (0101), 88 format type (0008)
          5F2E L | 7F2E L             biometric data block: the facial record below
    'FAC\\0' '010\\0' record-length(4) image-count(2)
      per image: block-length(4) feature-points(2) gender eye hair mask(3) expression(2)
                 pose(3) pose-uncertainty(3), feature points (8 bytes each),
                 image information: type, data type (0 JPEG / 1 JPEG 2000), width(2), height(2),
                 colour space, source type, device type(2), quality(2); then the image bytes.

Every length is checked against what is really there before it is used (see ber_tlv), and the
record's own length fields must agree with the TLV lengths: a chip whose structure contradicts
itself is refused with a message naming the field, never parsed "as far as it goes". The newer
ISO/IEC 39794-5 (ASN.1) face data block is recognised and refused as unsupported.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from services.docverify.ber_tlv import Tlv, TlvError, read_single, tag_name
from services.runtime.errors import InvalidArgument
from services.runtime.images import sniff_format

TAG_DG2 = 0x75
TAG_BIT_GROUP = 0x7F61
TAG_BIT = 0x7F60
TAG_COUNT = 0x02
TAG_BHT = 0xA1
TAG_BDB = 0x5F2E
TAG_BDB_CONSTRUCTED = 0x7F2E
TAG_BIOMETRIC_TYPE = 0x81
TAG_FORMAT_OWNER = 0x87
TAG_FORMAT_TYPE = 0x88

BIOMETRIC_TYPE_FACE = 0x02
FORMAT_OWNER_JTC1_SC37 = 0x0101
FORMAT_TYPE_FACE = 0x0008

FAC_MAGIC = b"FAC\x00"
FAC_VERSION_2005 = b"010\x00"
HEADER_LEN = 14
FACIAL_INFO_LEN = 20
FEATURE_POINT_LEN = 8
IMAGE_INFO_LEN = 12

#: More instances or images than this is not a passport, it is an attack on the parser's time.
MAX_INSTANCES = 8
MAX_IMAGES = 8

IMAGE_DATA_TYPES = {0: "JPEG", 1: "JPEG2000"}


class Dg2Error(InvalidArgument):
    """DG2 bytes that are malformed, truncated or not a face record; the message says where."""


@dataclass(frozen=True)
class FacialImage:
    """One image of a facial record with the properties its record declares."""

    image: bytes
    image_format: str  # "JPEG" or "JPEG2000", from the image data type (checked against the bytes)
    width: int
    height: int
    face_image_type: int  # 0 basic, 1 full frontal, 2 token frontal
    colour_space: int
    source_type: int
    device_type: int
    quality: int
    gender: int
    eye_colour: int
    hair_colour: int
    feature_mask: int
    expression: int
    pose_yaw: int
    pose_pitch: int
    pose_roll: int
    feature_points: int


@dataclass(frozen=True)
class Dg2:
    """The parsed data group: the facial images of every instance, in chip order."""

    instances: int
    images: tuple[FacialImage, ...]

    @property
    def primary(self) -> FacialImage:
        return self.images[0]


def parse_dg2(data: bytes, *, max_bytes: int) -> Dg2:
    """Parse raw DG2 bytes or raise Dg2Error (INVALID_ARGUMENT) naming the first fault."""
    if not data:
        raise Dg2Error("DG2 is empty (0 bytes)")
    if len(data) > max_bytes:
        raise Dg2Error(f"DG2 is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        return _parse(data)
    except TlvError as exc:
        raise Dg2Error(f"DG2 is malformed {exc}") from None


def _parse(data: bytes) -> Dg2:
    dg2 = read_single(data, TAG_DG2, "DG2")
    groups = [t for t in dg2.children() if t.tag == TAG_BIT_GROUP]
    if len(groups) != 1:
        raise TlvError(dg2.value_offset, f"DG2 must hold one 7F61 template, found {len(groups)}")
    members = groups[0].children()
    if not members or members[0].tag != TAG_COUNT:
        raise TlvError(groups[0].value_offset, "7F61 must start with the instance count (tag 02)")
    count_tlv = members[0]
    if len(count_tlv.value) != 1:
        raise TlvError(count_tlv.offset, f"instance count must be 1 byte, found {len(count_tlv.value)}")
    count = count_tlv.value[0]
    if not 1 <= count <= MAX_INSTANCES:
        raise TlvError(count_tlv.offset, f"instance count {count} is outside 1..{MAX_INSTANCES}")
    templates = members[1:]
    if len(templates) != count or any(t.tag != TAG_BIT for t in templates):
        found = ", ".join(tag_name(t.tag) for t in templates) or "nothing"
        raise TlvError(
            groups[0].value_offset, f"instance count says {count} x 7F60 but the template holds {found}"
        )
    images: list[FacialImage] = []
    for template in templates:
        images.extend(_parse_bit(template))
    return Dg2(instances=count, images=tuple(images))


def _parse_bit(template: Tlv) -> list[FacialImage]:
    parts = template.children()
    if len(parts) != 2 or parts[0].tag != TAG_BHT or parts[1].tag not in (TAG_BDB, TAG_BDB_CONSTRUCTED):
        found = ", ".join(tag_name(t.tag) for t in parts) or "nothing"
        raise TlvError(template.value_offset, f"7F60 must hold A1 then 5F2E (or 7F2E); found {found}")
    _check_header(parts[0])
    block = parts[1]
    return _parse_facial_record(bytes(block.value), block.value_offset)


def _check_header(bht: Tlv) -> None:
    """The header fields that say what the block is; absent ones are allowed (ICAO marks them optional)."""
    fields = {t.tag: bytes(t.value) for t in bht.children()}
    kind = fields.get(TAG_BIOMETRIC_TYPE)
    if kind is not None and (len(kind) < 1 or not kind[-1] & BIOMETRIC_TYPE_FACE):
        raise TlvError(bht.value_offset, f"biometric type {kind.hex()} is not facial features (02)")
    owner = fields.get(TAG_FORMAT_OWNER)
    if owner is not None and owner != FORMAT_OWNER_JTC1_SC37.to_bytes(2, "big"):
        raise TlvError(bht.value_offset, f"format owner {owner.hex()} is not ISO/IEC JTC 1/SC 37 (0101)")


def _parse_facial_record(record: bytes, base: int) -> list[FacialImage]:
    """ISO/IEC 19794-5:2005 facial record; ``base`` is its offset in the DG2, for messages."""
    if record[:4] != FAC_MAGIC:
        raise TlvError(
            base,
            f"biometric data block starts with {record[:4].hex() or 'nothing'}, not an ISO/IEC 19794-5 "
            "facial record ('FAC\\0'); ISO/IEC 39794-5 blocks are not supported",
        )
    if len(record) < HEADER_LEN:
        raise TlvError(base, f"facial record is {len(record)} bytes, shorter than its 14-byte header")
    if record[4:8] != FAC_VERSION_2005:
        raise TlvError(base + 4, f"facial record version {record[4:8]!r} is not ISO/IEC 19794-5:2005 ('010')")
    declared_len, n_images = struct.unpack_from(">IH", record, 8)
    if declared_len != len(record):
        raise TlvError(
            base + 8,
            f"facial record length field says {declared_len} bytes but the data block holds {len(record)}",
        )
    if not 1 <= n_images <= MAX_IMAGES:
        raise TlvError(base + 12, f"facial record declares {n_images} images; expected 1..{MAX_IMAGES}")
    pos = HEADER_LEN
    images = []
    for index in range(n_images):
        image, pos = _parse_image(record, pos, base, index)
        images.append(image)
    if pos != len(record):
        raise TlvError(base + pos, f"{len(record) - pos} byte(s) after the last facial image")
    return images


def _parse_image(record: bytes, pos: int, base: int, index: int) -> tuple[FacialImage, int]:
    where = f"facial image {index + 1}"
    remaining = len(record) - pos
    if remaining < FACIAL_INFO_LEN:
        raise TlvError(base + pos, f"{where}: information block needs 20 bytes, {remaining} remain")
    (block_len, n_points, gender, eye, hair, mask_hi, mask_lo, expression, yaw, pitch, roll) = (
        struct.unpack_from(">IHBBBBHHBBB", record, pos)
    )
    mask = (mask_hi << 16) | mask_lo
    fixed = FACIAL_INFO_LEN + n_points * FEATURE_POINT_LEN + IMAGE_INFO_LEN
    if block_len > remaining:
        raise TlvError(base + pos, f"{where}: block length {block_len} exceeds the {remaining} bytes left")
    if block_len <= fixed:
        raise TlvError(
            base + pos,
            f"{where}: block length {block_len} leaves no image data after {n_points} feature point(s) "
            f"and the image information ({fixed} bytes)",
        )
    info_at = pos + FACIAL_INFO_LEN + n_points * FEATURE_POINT_LEN
    (face_type, data_type, width, height, colour, source, device, quality) = struct.unpack_from(
        ">BBHHBBHH", record, info_at
    )
    image_at = info_at + IMAGE_INFO_LEN
    image = record[image_at : pos + block_len]
    fmt = IMAGE_DATA_TYPES.get(data_type)
    if fmt is None:
        raise TlvError(
            base + info_at + 1, f"{where}: image data type {data_type} is neither JPEG (0) nor JPEG 2000 (1)"
        )
    sniffed = sniff_format(image)
    if sniffed != fmt:
        raise TlvError(
            base + image_at,
            f"{where}: declared {fmt} but the image bytes are {sniffed or 'not a known image format'}",
        )
    if width == 0 or height == 0:
        raise TlvError(base + info_at + 2, f"{where}: declared image size {width}x{height} is empty")
    return (
        FacialImage(
            image=image,
            image_format=fmt,
            width=width,
            height=height,
            face_image_type=face_type,
            colour_space=colour,
            source_type=source,
            device_type=device,
            quality=quality,
            gender=gender,
            eye_colour=eye,
            hair_colour=hair,
            feature_mask=mask,
            expression=expression,
            pose_yaw=yaw,
            pose_pitch=pitch,
            pose_roll=roll,
            feature_points=n_points,
        ),
        pos + block_len,
    )
