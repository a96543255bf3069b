"""Generated bad input against the three parsers that read what a reader or camera sends: the image
decoder, the DG2 parser and the MRZ parser. Every input must be answered with a value or a
defined error (INVALID_ARGUMENT or RESOURCE_EXHAUSTED), within a bounded time and memory: never
another exception (a crash), never a hang, never a decompression bomb decoded.

Inputs: raw bytes and text, mutations (bit flips, truncation, insertion) of valid images, DG2s and
MRZs, and crafted headers that claim huge sizes. Counts: conftest.BUDGET (150 each in ``make test``,
3,000 each in ``make test-reliability``)."""

from __future__ import annotations

import datetime as dt
import io
import resource
import struct
import time
import zlib
from functools import cache

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facegate.errors import FacegateError
from tests.reliability.conftest import BUDGET, Figures

IMAGE_MAX_BYTES = 20 * 1024 * 1024
IMAGE_MAX_PIXELS = 40_000_000
#: The slowest any one input may take (a decode of a legitimate maximum-size image takes well under).
HANG_S = 10.0
#: How much the test process may grow over all inputs together (bombs must be refused, not decoded).
MEMORY_GROWTH_LIMIT = 1024 * 1024 * 1024
DEFINED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


def fuzz_settings(n: int):
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def encoded(fmt: str, size: tuple[int, int] = (48, 40), seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt)
    return out.getvalue()


@cache
def image_seeds() -> tuple[bytes, ...]:
    return tuple(encoded(fmt) for fmt in ("JPEG", "PNG", "WEBP", "JPEG2000"))


def png_claiming(width: int, height: int, payload: bytes = b"") -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with a tiny (bomb-like) compressed body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    body = zlib.compress(payload or b"\0" * 65536, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", body)
        + chunk(b"IEND", b"")
    )


@st.composite
def mutated(draw, seeds: tuple[bytes, ...]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(("flip", "truncate", "insert", "delete", "splice")))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            data[pos : pos + 4] = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
    return bytes(data)


IMAGE_INPUTS = st.one_of(
    st.binary(max_size=2048),
    mutated(image_seeds()),
    st.builds(png_claiming, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
    st.builds(
        lambda prefix, rest: prefix + rest, st.sampled_from([s[:16] for s in image_seeds()]), st.binary()
    ),
)


class Tally:
    """Outcomes of one parser's inputs; fails on a crash or a hang."""

    def __init__(self, figures: Figures, name: str) -> None:
        self.figures, self.name = figures, name
        self.start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def run(self, fn, *args) -> None:
        started = time.monotonic()
        try:
            fn(*args)
            outcome = "OK"
        except FacegateError as exc:
            outcome = exc.code.name
            if exc.code not in DEFINED:
                self.figures.add("crashes")
                pytest.fail(f"{self.name}: undefined status {outcome} for input {args[0][:64]!r}")
        except Exception as exc:  # a crash: what the parser let through
            self.figures.add("crashes")
            pytest.fail(f"{self.name} crashed with {type(exc).__name__}: {exc} on input {args[0][:64]!r}")
        elapsed = time.monotonic() - started
        self.figures.add("inputs_tried")
        self.figures.add(f"inputs_tried.{self.name}")
        self.figures.status(f"parser.{self.name}", outcome)
        if elapsed > HANG_S:
            self.figures.add("hangs")
            pytest.fail(f"{self.name} took {elapsed:.1f}s on input {args[0][:64]!r}")
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.start_rss
        if grown > MEMORY_GROWTH_LIMIT:
            pytest.fail(f"{self.name}: memory grew by {grown >> 20} MiB")


def test_image_decoder_answers_every_input(figures: Figures) -> None:
    from services.runtime.images import decode_image

    tally = Tally(figures, "image_decoder")

    @fuzz_settings(BUDGET.parser_inputs)
    @given(IMAGE_INPUTS, st.sampled_from([None, "jpeg", "png", "webp", "jpeg2000"]))
    def decode(data: bytes, hint: str | None) -> None:
        tally.run(
            lambda d: decode_image(
                d, max_bytes=IMAGE_MAX_BYTES, max_pixels=IMAGE_MAX_PIXELS, format_hint=hint
            ),
            data,
        )

    decode()


def test_decompression_bombs_are_refused_before_decoding(figures: Figures) -> None:
    """A 1 GB-pixel PNG in a few KB, and a legit-looking 30k x 30k JPEG header: refused, fast."""
    from services.runtime.images import decode_image

    tally = Tally(figures, "image_decoder")
    bombs = [png_claiming(32768, 32768), png_claiming(100_000, 1), png_claiming(1, 100_000_000)]
    jpeg = bytearray(encoded("JPEG", (64, 64)))
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    bombs.append(bytes(jpeg))
    for bomb in bombs:
        started = time.monotonic()
        with pytest.raises(FacegateError) as refused:
            decode_image(bomb, max_bytes=IMAGE_MAX_BYTES, max_pixels=IMAGE_MAX_PIXELS)
        assert refused.value.code in DEFINED
        assert time.monotonic() - started < 2.0
        tally.figures.add("inputs_tried")
        tally.figures.status("parser.image_decoder", refused.value.code.name)


@cache
def dg2_seeds() -> tuple[bytes, ...]:
    from tests.docverify.dg2_builder import dg2_for_image

    return (
        dg2_for_image(encoded("JPEG", (60, 80), 1), "JPEG", 60, 80),
        dg2_for_image(encoded("JPEG2000", (60, 80), 2), "JPEG2000", 60, 80),
    )


def test_dg2_parser_answers_every_input(figures: Figures) -> None:
    from services.docverify.dg2 import parse_dg2

    tally = Tally(figures, "dg2")
    inputs = st.one_of(
        st.binary(max_size=2048),
        mutated(dg2_seeds()),
        st.builds(lambda rest: b"\x75" + rest, st.binary(max_size=512)),  # the DG2 tag, then anything
        st.builds(lambda n: b"\x75\x84" + struct.pack(">I", n) + b"\x7f\x61", st.integers(0, 2**32 - 1)),
    )

    @fuzz_settings(BUDGET.parser_inputs)
    @given(inputs)
    def parse(data: bytes) -> None:
        tally.run(lambda d: parse_dg2(d, max_bytes=IMAGE_MAX_BYTES), data)

    parse()


MRZ_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<"


@cache
def mrz_seeds() -> tuple[str, ...]:
    from tests.docverify.specimens import valid_specimens

    return tuple("\n".join(s["mrz"]) for s in valid_specimens())


@st.composite
def mrz_text(draw) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.text(max_size=200))  # any unicode
    if kind == 1:
        lines = draw(st.lists(st.text(alphabet=MRZ_CHARS, min_size=0, max_size=50), max_size=4))
        return draw(st.sampled_from(["\n", "\r\n", " ", ""])).join(lines)
    seed = list(draw(st.sampled_from(mrz_seeds())))
    for _ in range(draw(st.integers(1, 6))):
        if not seed:
            break
        pos = draw(st.integers(0, len(seed) - 1))
        seed[pos] = draw(st.one_of(st.sampled_from(MRZ_CHARS + "\n"), st.characters()))
    if kind == 3:
        seed = seed[: draw(st.integers(0, len(seed)))]
    return "".join(seed)


def test_mrz_parser_answers_every_input(figures: Figures) -> None:
    from services.docverify.mrz_check import check_mrz

    tally = Tally(figures, "mrz")

    @fuzz_settings(BUDGET.parser_inputs)
    @given(mrz_text(), st.dates(dt.date(1900, 1, 1), dt.date(2200, 12, 31)))
    def parse(text: str, on: dt.date) -> None:
        tally.run(lambda t: check_mrz(t, on), text)

    parse()
