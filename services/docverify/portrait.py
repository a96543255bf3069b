"""Where the portrait is on a photo-page scan, and how its detection request differs from a live one.

Measured on the 26 specimen pages (docs/docverify.md): MTCNN finds the main portrait on every page
that has one at the page's own resolution once the pyramid reaches down to ~ 20 px faces, and
upscaling the page 2x found no additional portrait while costing 2-6x the detection time; so pages
are sent as they are, with a small ``min_face_size``. Ghost images (the small secondary portrait
printed for security) are 16-42 px against 47-170 px for the main portrait, and a few false
detections sit in the 9-23 px range, so the *largest* face is the primary portrait.
"""

from __future__ import annotations

import dataclasses
import io

from PIL import Image

from facegate.pipeline import FacePolicy
from facegate.v1 import common_pb2, detection_pb2
from services.docverify.quality import Bounds, judge

#: Head-and-shoulders region around the MTCNN face box, as ICAO portraits are framed (35 x 45 mm).
REGION_WIDTH = 1.8
REGION_HEIGHT = 2.3
REGION_FACE_CENTRE = 0.45  # the face box centre sits at this fraction of the region height


def portrait_policy(settings: object) -> FacePolicy:
    """One face per document image: the largest, with its aligned crop for the embedding model."""
    return FacePolicy(
        subject_selection=detection_pb2.SUBJECT_SELECTION_LARGEST,
        min_confidence=settings.portrait_min_confidence,  # type: ignore[attr-defined]
        min_face_size=settings.portrait_min_face_size,  # type: ignore[attr-defined]
    )


def portrait_searches(settings: object, data: bytes, *, dg2: bool) -> tuple[FacePolicy, ...]:
    """The searches for a document image's face, in order: the second runs only when the first
    finds no face. A DG2's image gets the document profile first; anything else only the full
    :func:`portrait_policy` search.

    A chip portrait holds one face framed by ISO/IEC 19794-5 (it spans about half the image's
    width), so the first search asks for a face at least ``portrait_profile_face_fraction`` of the
    image's shorter side, on a copy scaled to it: a 480x640 DG2 is searched at ~130x170 instead of
    from 20 px faces up (measured: MTCNN 105-117 -> ~30 ms here). Crops still come from the full
    image. When that finds nothing, :func:`portrait_policy`'s full search runs, so a small face is
    still found and judged and "no face" stays "no face".

    Only for DG2s: a portrait image or a page may hold other faces, and on a copy the largest one
    can be missed while a smaller one is found (measured on a dev photo with two faces), which
    would compare the wrong face. Landmarks from the copy also move the pose estimate (median 1,
    at most ~10 degrees on dev photos): a chip portrait is frontal by issue, far from the 35 degree
    bound; an arbitrary photo need not be.
    """
    full = portrait_policy(settings)
    fraction = settings.portrait_profile_face_fraction  # type: ignore[attr-defined]
    size = image_size(data) if fraction and dg2 else None
    if size is None:
        return (full,)
    floor = settings.portrait_min_face_size  # type: ignore[attr-defined]
    min_face = round(fraction * min(size))
    if min_face <= floor:  # a small image: the profile would search what the full search does
        return (full,)
    return (dataclasses.replace(full, min_face_size=min_face, scale_to_min_face=True), full)


def profile_falls_short(face: detection_pb2.DetectedFace | None, bounds: dict[int, Bounds]) -> str | None:
    """Why the document profile's face must be searched for again in full: ``"no_face"`` when it
    found no large face, ``"quality"`` when its face fails a portrait check; None when it stands.

    The profile's landmarks come from a copy a third of the chip's size, and they move the pose
    estimate: on 120 ICAO-style portraits of dev photos, yaw by a median 0.7, p90 2.9 and at most
    9.6 degrees from the full search's, which pushed one portrait from 29.7 to 38.0 degrees, over
    the 35 degree bound, and one traveller of 120 from ACCEPT to REFER. So the fast search may only
    make a passing answer faster; a refusal is the full search's to give.
    """
    if face is None:
        return "no_face"
    if not judge(face.quality, bounds).acceptable:
        return "quality"
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header alone, or None when it cannot be read (detection
    then decodes it and says what is wrong)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def live_policy(settings: object) -> FacePolicy:
    """The gate capture, first try: the kiosk profile when configured, else :func:`live_full_policy`.

    A gate camera sees one large face; every face narrower than ~ 110 px fails the 60 px
    inter-eye quality bound anyway (dev faces: eye distance <= 0.54 of the box width), so the
    kiosk profile detects on a copy scaled to ``live_kiosk_min_face_size`` (100 px -> a 1280x720
    frame is searched at 256x144; measured in bench/results/kiosk.md). Crops still come from the
    full-resolution frame.
    """
    kiosk = settings.live_kiosk_min_face_size  # type: ignore[attr-defined]
    if kiosk is None:
        return live_full_policy(settings)
    return FacePolicy(min_face_size=kiosk, scale_to_min_face=True, all_faces=True)


def live_full_policy(settings: object) -> FacePolicy:
    """The gate capture searched at full size: detection's own policy.

    Run when the kiosk profile found no face, so a traveller standing too far away is still told
    to step closer (and a frame with no face at all is still NO_FACE). Both live policies ask for
    every face, not only the subject: whether another face is a second person at the gate or a
    face in the background depends on its size (``facegate.single_face``).
    """
    return FacePolicy(min_face_size=settings.live_min_face_size, all_faces=True)  # type: ignore[attr-defined]


def portrait_region(box: common_pb2.BoundingBox, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the head-and-shoulders region around a face box, clipped to the page."""
    cx = box.x + box.width / 2
    cy = box.y + box.height / 2
    w = box.width * REGION_WIDTH
    h = box.height * REGION_HEIGHT
    x0 = max(0, round(cx - w / 2))
    y0 = max(0, round(cy - h * REGION_FACE_CENTRE))
    x1 = min(width, round(cx + w / 2))
    y1 = min(height, round(cy - h * REGION_FACE_CENTRE + h))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)
