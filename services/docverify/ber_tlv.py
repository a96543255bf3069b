"""A strict BER-TLV reader for chip data groups (ISO/IEC 7816-4 / ICAO 9303 Part 10 encoding).

Chip data arrives from a reader the gate does not control, so every length is checked against
the bytes that actually remain before anything is sliced: a declared length can never make the
parser read past its enclosing value, allocate a huge buffer or loop forever. Only the definite
length forms ICAO allows (short form and 0x81..0x84) are accepted; the indefinite form (0x80) and
lengths over 4 bytes are rejected, as are tags longer than 4 bytes.

Errors are raised as :class:`TlvError` with the byte offset, so the caller can turn them into a
precise INVALID_ARGUMENT message ("DG2: at byte 17: tag 7F60 declares 70000 bytes but 912 remain").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

MAX_TAG_BYTES = 4
MAX_LENGTH_BYTES = 4


class TlvError(ValueError):
    """Malformed TLV; ``offset`` is the byte position (in the outermost buffer) where it went wrong."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"at byte {offset}: {message}")
        self.offset = offset


@dataclass(frozen=True)
class Tlv:
    """One decoded element. ``value`` is a zero-copy view into the original buffer."""

    tag: int
    offset: int  # where the tag starts, in the outermost buffer
    value_offset: int  # where the value starts
    value: memoryview

    @property
    def constructed(self) -> bool:
        """Bit 6 of the first tag byte: the value is itself a sequence of TLVs."""
        first = self.tag
        while first > 0xFF:
            first >>= 8
        return bool(first & 0x20)

    @property
    def end(self) -> int:
        return self.value_offset + len(self.value)

    def children(self) -> list[Tlv]:
        """The TLVs inside a constructed value (which must be filled exactly)."""
        if not self.constructed:
            raise TlvError(self.offset, f"tag {tag_name(self.tag)} is primitive, not a template")
        return list(iter_tlvs(self.value, self.value_offset))


def tag_name(tag: int) -> str:
    """Tags as the standards print them: 5F2E, 7F61, A1."""
    width = max(2, (tag.bit_length() + 7) // 8 * 2)
    return f"{tag:0{width}X}"


def read_tlv(buf: memoryview, pos: int, base: int = 0) -> tuple[Tlv, int]:
    """Decode the element at ``pos`` of ``buf``; returns it and the position just after it.

    ``base`` is the offset of ``buf`` in the outermost buffer (for error messages only).
    """
    size = len(buf)
    start = pos
    if pos >= size:
        raise TlvError(base + pos, "expected a tag but the data ended")
    first = buf[pos]
    if first in (0x00, 0xFF):
        raise TlvError(base + pos, f"byte {first:02X} is padding, not a tag")
    tag = first
    pos += 1
    if first & 0x1F == 0x1F:  # multi-byte tag: continuation bytes have bit 8 set, the last has it clear
        while True:
            if pos >= size:
                raise TlvError(base + start, "tag is cut off")
            byte = buf[pos]
            tag = (tag << 8) | byte
            pos += 1
            if pos - start > MAX_TAG_BYTES:
                raise TlvError(base + start, f"tag is longer than {MAX_TAG_BYTES} bytes")
            if not byte & 0x80:
                break
    if pos >= size:
        raise TlvError(base + start, f"tag {tag_name(tag)} has no length")
    lead = buf[pos]
    pos += 1
    if lead < 0x80:
        length = lead
    elif lead == 0x80:
        raise TlvError(base + pos - 1, f"tag {tag_name(tag)} uses the indefinite length form (not allowed)")
    else:
        count = lead & 0x7F
        if count > MAX_LENGTH_BYTES:
            raise TlvError(base + pos - 1, f"tag {tag_name(tag)} has a {count}-byte length field (max 4)")
        if pos + count > size:
            raise TlvError(base + pos - 1, f"length of tag {tag_name(tag)} is cut off")
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    remaining = size - pos
    if length > remaining:
        raise TlvError(
            base + start, f"tag {tag_name(tag)} declares {length} bytes but only {remaining} remain"
        )
    value = buf[pos : pos + length]
    return Tlv(tag=tag, offset=base + start, value_offset=base + pos, value=value), pos + length


def iter_tlvs(buf: memoryview, base: int = 0) -> Iterator[Tlv]:
    """Every element of ``buf`` in order; the buffer must hold whole elements and nothing else."""
    pos = 0
    while pos < len(buf):
        tlv, pos = read_tlv(buf, pos, base)
        yield tlv


def read_single(data: bytes | memoryview, expected_tag: int, what: str) -> Tlv:
    """The one top-level element of ``data``, which must carry ``expected_tag`` and fill the buffer."""
    buf = memoryview(data)
    tlv, end = read_tlv(buf, 0)
    if tlv.tag != expected_tag:
        raise TlvError(0, f"{what} must start with tag {tag_name(expected_tag)}, found {tag_name(tlv.tag)}")
    if end != len(buf):
        raise TlvError(end, f"{len(buf) - end} unexpected byte(s) after the {what} template")
    return tlv
