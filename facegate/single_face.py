"""One traveller at the gate: is another face in the live capture a second person, or background?

An e-gate must refuse a capture with a second person in it (a tailgater, a companion at the
traveller's shoulder): which face the gate verified would be a guess, and the gate must not open
for two. But its camera also sees the hall behind the traveller, and faces there are no one at
the gate. What tells them apart is size: a face's image size falls with its distance from the
camera, so the size of another face relative to the traveller's is the ratio of their distances
(for heads of similar size). ISO/IEC 29794-5 measures a capture's "single face present" the same
way: the square root of the second-largest face box's area over the largest's (OFIQ's
SingleFacePresent). Why the default cut is 0.4 (a person up to ~ 1 m behind the traveller, or
a child at their side, counts; a face in a queue behind the gate's entry does not) is worked
out in docs/docverify.md ("One traveller at a time").

Every live capture gets the measure (QUALITY_CHECK_SINGLE_FACE), passed or not, with the
background faces named in its detail: a face that did not count is reported, never dropped.
Docverify judges its live capture with it and the gateway each frame of a camera stream, so a
frame the stream accepts is not turned back by the verification (the client layer holds it for both).
"""

from __future__ import annotations

import math

from facegate.v1 import common_pb2, detection_pb2

QC = common_pb2.QualityCheck

#: Another face at least this fraction of the traveller's size is a second person (docs/docverify.md).
DEFAULT_OTHER_FACE_RATIO = 0.4


def relative_sizes(response: detection_pb2.DetectResponse) -> list[float]:
    """Each non-subject face's size over the subject's (square roots of box areas), largest first."""
    if response.subject_index < 0 or response.subject_index >= len(response.faces):
        return []
    subject = response.faces[response.subject_index].box
    area = max(subject.width * subject.height, 1e-6)
    sizes = [
        math.sqrt(max(f.box.width * f.box.height, 0.0) / area)
        for i, f in enumerate(response.faces)
        if i != response.subject_index
    ]
    return sorted(sizes, reverse=True)


def search_floor(subject: detection_pb2.DetectedFace, kiosk: int | None, full: int | None) -> int | None:
    """The smallest face the live search looked for: the kiosk profile's when it found the subject
    (docverify searches the whole frame only when that profile finds no face), else the full one's."""
    if kiosk and min(subject.box.width, subject.box.height) >= kiosk:
        return kiosk
    return full


def single_face_measure(
    sizes: list[float], max_ratio: float, searched_from: int | None = None
) -> common_pb2.QualityMeasure:
    """The single-face verdict on a capture whose other faces have ``sizes`` (relative to the subject);
    ``searched_from``: the smallest face side (px) the search looked for, when it had one."""
    largest = sizes[0] if sizes else 0.0
    people = [s for s in sizes if s >= max_ratio]
    background = [s for s in sizes if s < max_ratio]
    measure = common_pb2.QualityMeasure(
        check=QC.QUALITY_CHECK_SINGLE_FACE, value=largest, max=max_ratio, passed=not people
    )
    if people:
        measure.detail = (
            f"{len(people)} other face(s) {_sizes(people)} the traveller's size (>= {max_ratio:g}): "
            "another person at the gate"
        )
    elif background:
        measure.detail = (
            f"{len(background)} face(s) in the background, {_sizes(background)} the traveller's size "
            f"(< {max_ratio:g}): not counted as another person"
        )
    else:
        measure.detail = "no other face" + (f" of {searched_from} px or more" if searched_from else "")
    return measure


def with_single_face(
    response: detection_pb2.DetectResponse, max_ratio: float, searched_from: int | None = None
) -> tuple[common_pb2.Quality, int]:
    """The subject face's quality verdict with the single-face measure added (failed, and the
    verdict with it, when another person is at the gate), and how many people the capture shows."""
    quality = common_pb2.Quality()
    quality.CopyFrom(response.faces[response.subject_index].quality)
    sizes = relative_sizes(response)
    measure = single_face_measure(sizes, max_ratio, searched_from)
    quality.measures.append(measure)
    if not measure.passed:
        quality.failed.append(measure.check)
        quality.acceptable = False
    return quality, 1 + sum(size >= max_ratio for size in sizes)


def _sizes(sizes: list[float]) -> str:
    return "/".join(f"{s:.2f}" for s in sizes[:5]) + ("/..." if len(sizes) > 5 else "")
