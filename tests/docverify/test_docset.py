"""The document-style evaluation set (tools/docset): deterministic, and each source is what it claims.

Built for two identities against the session's real detection server, then read back through
docverify's own parsers and its page-scan path (the session's docverify server).
"""

from __future__ import annotations

import filecmp

import pytest

from facegate.v1 import common_pb2, docverify_pb2
from services.docverify.dg2 import parse_dg2
from tests.docverify.frames import decode
from tools.docset import degrade
from tools.docset.build import SOURCES, build, identities
from tools.docset.portrait import ASPECT, WIDTHS
from tools.gate_frame import live_frame

NAMES = identities()[:2]
JP2_MAGIC = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory, detection_server):
    """The same two identities built twice with seed 0, and once with seed 1."""
    target = f"127.0.0.1:{detection_server.port}"
    out = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        folder = tmp_path_factory.mktemp(f"docset-{label}")
        out[label] = (folder, build(folder, seed, NAMES, detection=target))
    return out


def test_the_same_seed_builds_the_same_bytes(built) -> None:
    (a, manifest_a), (b, manifest_b) = built["a"], built["b"]
    assert manifest_a == manifest_b
    assert all("skipped" not in e for e in manifest_a["identities"])
    for name in NAMES:
        for source in (*SOURCES, "live.jpg"):
            assert filecmp.cmp(a / name / source, b / name / source, shallow=False), (name, source)


def test_another_seed_builds_another_set(built) -> None:
    (a, _), (c, _) = built["a"], built["c"]
    assert any(not filecmp.cmp(a / n / "dg2_jpeg.bin", c / n / "dg2_jpeg.bin", shallow=False) for n in NAMES)


@pytest.mark.parametrize(("source", "fmt"), [("dg2_jpeg.bin", "JPEG"), ("dg2_jp2.bin", "JPEG2000")])
def test_dg2s_hold_an_iso_sized_image_of_12_to_20_kb(built, source: str, fmt: str) -> None:
    folder, _ = built["a"]
    for name in NAMES:
        face = parse_dg2((folder / name / source).read_bytes(), max_bytes=1 << 20).primary
        assert face.image_format == fmt
        assert len(face.image) <= degrade.CHIP_MAX_BYTES, len(face.image)
        # Below token size (240 px) even the best quality may not fill 12 kB.
        assert len(face.image) >= degrade.CHIP_MIN_BYTES or face.width < 240, (face.width, len(face.image))
        assert face.width in WIDTHS and face.height == round(face.width * ASPECT)
        if fmt == "JPEG2000":
            assert face.image.startswith(JP2_MAGIC)
        else:
            assert face.image.startswith(b"\xff\xd8\xff")


def test_docverify_finds_the_pasted_portrait_on_the_page(built, stub) -> None:
    """ExtractPortrait lands on the region the portrait was pasted into, and Verify matches it
    against a gate frame of the portrait itself (so it was not the specimen's ghost image)."""
    folder, manifest = built["a"]
    for entry in manifest["identities"]:
        page = (folder / entry["identity"] / "page.jpg").read_bytes()
        reply = stub.ExtractPortrait(
            docverify_pb2.ExtractPortraitRequest(page_scan=common_pb2.Image(data=page))
        )
        x0, y0, x1, y1 = entry["page_region"]
        cx, cy = reply.box.x + reply.box.width / 2, reply.box.y + reply.box.height / 2
        assert x0 <= cx <= x1 and y0 <= cy <= y1, (entry["page_layout"], reply.box, entry["page_region"])
        live = live_frame(decode((folder / entry["identity"] / "portrait.jpg").read_bytes()))
        verdict = stub.Verify(
            docverify_pb2.VerifyRequest(
                live=common_pb2.Image(data=live), page_scan=common_pb2.Image(data=page)
            )
        )
        assert verdict.similarity > 0.7, (entry["identity"], verdict.similarity)
