"""The searches docverify makes for a document portrait's face (services.docverify.portrait)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facegate.v1 import common_pb2, detection_pb2
from services.docverify.config import DocverifySettings
from services.docverify.portrait import image_size, portrait_policy, portrait_searches, profile_falls_short
from services.docverify.quality import portrait_bounds


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 200, np.uint8)).save(out, "JPEG")
    return out.getvalue()


def test_a_chip_sized_portrait_is_searched_for_a_large_face_first_then_in_full() -> None:
    settings = DocverifySettings()
    first, then = portrait_searches(settings, jpeg(480, 640), dg2=True)
    assert first.scale_to_min_face and first.min_face_size == round(0.2 * 480)
    assert then == portrait_policy(settings)
    # Everything else is the portrait policy's: the largest face, the portrait confidence floor.
    assert (first.subject_selection, first.min_confidence) == (then.subject_selection, then.min_confidence)


@pytest.mark.parametrize(
    "data, fraction",
    [
        (jpeg(90, 120), 0.2),  # 0.2 x 90 = 18 px, under the full search's own 20 px: nothing to gain
        (jpeg(480, 640), 0.0),  # the profile switched off
        (b"not an image", 0.2),  # unreadable: detection decodes it and says what is wrong
        (b"", 0.2),
    ],
    ids=["small", "off", "garbage", "empty"],
)
def test_the_full_search_alone_where_the_profile_cannot_help(data: bytes, fraction: float) -> None:
    settings = DocverifySettings(portrait_profile_face_fraction=fraction)
    assert portrait_searches(settings, data, dg2=True) == (portrait_policy(settings),)


def test_portrait_images_and_pages_get_the_full_search_whatever_their_size() -> None:
    settings = DocverifySettings()
    assert portrait_searches(settings, jpeg(480, 640), dg2=False) == (portrait_policy(settings),)


def test_the_size_comes_from_the_header_of_jpeg_and_jpeg_2000() -> None:
    out = io.BytesIO()
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(out, "JPEG2000")
    assert image_size(out.getvalue()) == (48, 64)
    assert image_size(jpeg(300, 400)) == (300, 400)
    assert image_size(jpeg(300, 400)[:50]) is None  # a header cut short


def test_the_fraction_is_validated() -> None:
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError):
            DocverifySettings(portrait_profile_face_fraction=bad)


def _face(**values: float) -> detection_pb2.DetectedFace:
    measures = [
        common_pb2.QualityMeasure(check=common_pb2.QualityCheck.Value(f"QUALITY_CHECK_{name}"), value=value)
        for name, value in values.items()
    ]
    return detection_pb2.DetectedFace(quality=common_pb2.Quality(measures=measures))


def test_the_profile_stands_only_with_a_face_that_passes_the_portrait_checks() -> None:
    bounds = portrait_bounds(DocverifySettings())  # yaw <= 35 degrees, brightness 60-225, ...
    assert profile_falls_short(None, bounds) == "no_face"
    assert profile_falls_short(_face(YAW=-30.0, BRIGHTNESS=120.0), bounds) is None
    assert profile_falls_short(_face(YAW=-38.0, BRIGHTNESS=120.0), bounds) == "quality"
    assert profile_falls_short(_face(YAW=3.0, BRIGHTNESS=20.0), bounds) == "quality"
