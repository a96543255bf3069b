"""``python -m tools.docset build``: render the set under ``var/docset/`` (deterministic for a seed).

Per identity with two or more dev photos (``rng`` seeded with the seed and the identity's name, so
a subset builds the same files as the whole set): one photo is the document portrait, another the
live capture. Written per identity, in ``<out>/<identity>/``:

* ``portrait.jpg``  the ICAO-style portrait (``tools.docset.portrait``), JPEG quality 95
* ``dg2_jpeg.bin``  a DG2 (ICAO 9303 LDS, ISO/IEC 19794-5:2005) holding it as a 12-20 kB JPEG
* ``dg2_jp2.bin``   the same with a 12-20 kB JPEG 2000 (JP2)
* ``page.jpg``      a specimen photo page with it printed in place of the specimen portrait, scanned
* ``live.jpg``      the other photo as a 1280x720 gate-camera frame (``tools.gate_frame``)

and ``manifest.json`` with every choice made. Detection (a local service unless ``--detection``
names one) finds the eyes for the framing and the specimen pages' portrait boxes.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from facegate.client import open_channel
from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from tests.docverify.dg2_builder import dg2_for_image
from tools.docset import degrade, pages
from tools.docset.portrait import WIDTHS, FaceGeometry, render
from tools.gate_frame import live_frame

REPO = Path(__file__).resolve().parents[2]
FACES = REPO.parent / "shared" / "data" / "faces" / "images"
DOCUMENTS = REPO.parent / "shared" / "data" / "documents"
SOURCES = ("portrait.jpg", "dg2_jpeg.bin", "dg2_jp2.bin", "page.jpg")


def identities(faces: Path = FACES) -> list[str]:
    """Dev identities with at least two photos (a document and a live side), sorted."""
    return sorted(d.name for d in faces.iterdir() if d.is_dir() and len(list(d.glob("*.jpg"))) >= 2)


def rng_for(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


class Detector:
    """Detection's face boxes and landmarks (no crops: nothing is embedded while building)."""

    def __init__(self, target: str) -> None:
        self.channel = open_channel(target, budget_s=120)
        self.stub = detection_pb2_grpc.DetectionServiceStub(self.channel)

    def face(self, data: bytes, selection: int, min_face_size: int = 20) -> detection_pb2.DetectedFace | None:
        options = detection_pb2.DetectionOptions(
            subject_selection=selection, subject_only=True, min_face_size=min_face_size, min_confidence=0.8
        )
        reply = self.stub.Detect(
            detection_pb2.DetectRequest(image=common_pb2.Image(data=data), options=options), timeout=120
        )
        return reply.faces[reply.subject_index] if reply.subject_index >= 0 else None


@contextmanager
def detector(target: str | None) -> Iterator[Detector]:
    if target:
        yield Detector(target)
        return
    from facegate.launcher import local_services

    with local_services(("detection",)) as targets:
        det = Detector(targets["detection"])
        yield det
        det.channel.close()


def find_layouts(det: Detector) -> list[pages.Layout]:
    """Every specimen page whose largest face is its marked portrait."""
    out = []
    for spec in pages.specimens_with_portrait():
        data = (DOCUMENTS / spec["file"]).read_bytes()
        face = det.face(data, detection_pb2.SUBJECT_SELECTION_LARGEST)
        size = Image.open(io.BytesIO(data)).size
        layout = pages.layout_from_face(spec, face.box, size) if face is not None else None
        if layout is not None:
            out.append(layout)
    return out


def geometry(face: detection_pb2.DetectedFace) -> FaceGeometry:
    b, lm = face.box, face.landmarks
    return FaceGeometry(
        (b.x, b.y, b.width, b.height), (lm.left_eye.x, lm.left_eye.y), (lm.right_eye.x, lm.right_eye.y)
    )


def build_identity(name: str, seed: int, det: Detector, layouts: list[pages.Layout], out: Path) -> dict:
    """Render one identity's four documents and live frame; returns its manifest entry."""
    rng = rng_for(seed, name)
    photos = sorted(p.name for p in (FACES / name).glob("*.jpg"))
    doc_photo, live_photo = (photos[i] for i in rng.choice(len(photos), 2, replace=False))
    data = (FACES / name / doc_photo).read_bytes()
    face = det.face(data, detection_pb2.SUBJECT_SELECTION_MOST_CENTRAL)
    entry: dict = {"identity": name, "document_photo": doc_photo, "live_photo": live_photo}
    if face is None:
        return {**entry, "skipped": "no face found on the document photo"}
    width = int(rng.choice(WIDTHS))
    background = tuple(int(v) for v in rng.integers(222, 242, 3))
    portrait = render(Image.open(io.BytesIO(data)), geometry(face), width, background)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    portrait.save(buf, format="JPEG", quality=95)
    (folder / "portrait.jpg").write_bytes(buf.getvalue())
    jpeg = degrade.chip_jpeg(
        portrait, int(rng.integers(degrade.CHIP_MIN_BYTES + 1500, degrade.CHIP_MAX_BYTES))
    )
    jp2 = degrade.chip_jpeg2000(
        portrait, int(rng.integers(degrade.CHIP_MIN_BYTES + 1500, degrade.CHIP_MAX_BYTES))
    )
    (folder / "dg2_jpeg.bin").write_bytes(dg2_for_image(jpeg, "JPEG", portrait.width, portrait.height))
    (folder / "dg2_jp2.bin").write_bytes(dg2_for_image(jp2, "JPEG2000", portrait.width, portrait.height))
    layout = layouts[int(rng.integers(len(layouts)))]
    page = pages.paste(Image.open(DOCUMENTS / layout.file), portrait, layout, rng)
    page.save(folder / "page.jpg", format="JPEG", quality=90)
    live = np.asarray(Image.open(FACES / name / live_photo).convert("RGB"))
    (folder / "live.jpg").write_bytes(live_frame(live))
    return {
        **entry,
        "portrait_size": [portrait.width, portrait.height],
        "background": list(background),
        "chip_jpeg_bytes": len(jpeg),
        "chip_jpeg2000_bytes": len(jp2),
        "page_layout": layout.file,
        "page_layout_holder": layout.holder,
        "page_region": list(layout.region),
    }


def build(out: Path, seed: int, names: list[str], detection: str | None = None) -> dict:
    """Render ``names`` into ``out`` and write the manifest; returns it."""
    out.mkdir(parents=True, exist_ok=True)
    with detector(detection) as det:
        layouts = find_layouts(det)
        if not layouts:
            raise RuntimeError("no specimen page layout found (is ../shared/data/documents there?)")
        entries = [build_identity(name, seed, det, layouts, out) for name in names]
    manifest = {
        "seed": seed,
        "sources": list(SOURCES),
        "layouts": [asdict(layout) for layout in layouts],
        "identities": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
