"""Watchlist administration from photos, through the same face pipeline as the gate.

Every photo must hold exactly one acceptable face (the ENROLMENT policy: same geometry, model
version pinned, quality gate, no second large face). If any photo is refused, nothing is enrolled
and the error names each refused photo and why, so an admin can replace exactly those. Templates
are stored, never photos: ``store_photos`` is refused until a photo store exists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from facegate.context import submit
from facegate.errors import (
    FacegateError,
    FaceRejected,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
)
from facegate.pipeline import ENROLMENT, Template
from facegate.v1 import common_pb2, gateway_pb2, watchlist_pb2
from gateway.downstream import Downstream

#: Most photos one request may carry (the watchlist service's default templates-per-request).
MAX_PHOTOS = 16

#: PhotoCheck.reason of each FaceRejected.reason (every one; any other refusal is the image itself).
REASON_OF_REJECTION = {
    FaceRejected.NO_FACE: common_pb2.REASON_CODE_NO_FACE,
    FaceRejected.SEVERAL_FACES: common_pb2.REASON_CODE_MULTIPLE_FACES,
    FaceRejected.LOW_QUALITY: common_pb2.REASON_CODE_QUALITY_TOO_LOW,
}


class Refused(NamedTuple):
    """Why a photo was refused: a ReasonCode for programs, a message for people."""

    reason: common_pb2.ReasonCode
    message: str


def _template(down: Downstream, photo: common_pb2.Image, index: int) -> Template | Refused:
    """The photo's template, or why it was refused (its input faults, not the system's)."""
    try:
        return down.pipeline.template(photo, ENROLMENT, f"photos[{index}]")
    except FaceRejected as exc:
        return Refused(REASON_OF_REJECTION[exc.reason], exc.message)
    except (InvalidArgument, ResourceExhausted) as exc:  # unreadable, corrupt, empty or too large
        return Refused(common_pb2.REASON_CODE_INVALID_INPUT, exc.message)
    except FacegateError as exc:
        down.count_failure(exc)
        raise


def _templates(
    down: Downstream, photos: Sequence[common_pb2.Image], pool: ThreadPoolExecutor
) -> list[Template | Refused]:
    """Each photo's template or why it was refused, the photos worked on side by side."""
    if not photos:
        raise InvalidArgument("photos: at least one photo is required")
    if len(photos) > MAX_PHOTOS:
        raise ResourceExhausted(f"photos: {len(photos)} photos; the limit is {MAX_PHOTOS} per request")
    futures = [submit(pool, _template, down, photo, i) for i, photo in enumerate(photos)]
    return [f.result() for f in futures]


def check_photos(
    down: Downstream, request: gateway_pb2.CheckEnrolmentPhotosRequest, pool: ThreadPoolExecutor
) -> gateway_pb2.CheckEnrolmentPhotosResponse:
    """Each photo's verdict under the enrolment policy, so an admin can replace a bad one before saving."""
    out = gateway_pb2.CheckEnrolmentPhotosResponse()
    for i, result in enumerate(_templates(down, request.photos, pool)):
        if isinstance(result, Refused):
            out.photos.add(index=i, acceptable=False, problem=result.message, reason=result.reason)
        else:
            out.photos.add(index=i, acceptable=True, quality=result.face.quality)
    return out


def templates_from_photos(
    down: Downstream, request: gateway_pb2.EnrollFromPhotosRequest, pool: ThreadPoolExecutor
) -> list[watchlist_pb2.TemplateInput]:
    """One template per photo, or InvalidArgument listing every refused photo (nothing enrolled)."""
    if request.store_photos:
        raise FailedPrecondition("storing photos is not supported: facegate keeps templates only")
    results = _templates(down, request.photos, pool)
    refused = [r.message for r in results if isinstance(r, Refused)]
    if refused:
        raise InvalidArgument(
            f"{len(refused)} of {len(results)} photos refused, nothing enrolled: " + "; ".join(refused)
        )
    return [
        watchlist_pb2.TemplateInput(
            embedding=t.to_proto(), quality_score=t.quality_score, source=photo_source(photo)
        )
        for photo, t in zip(request.photos, results, strict=True)
        if isinstance(t, Template)
    ]


def photo_source(photo: common_pb2.Image) -> str:
    """A template's ``source``: its photo's content hash (not the photo, not a name), so a bulk
    import can tell which photos a subject was already enrolled from and skip them on a re-run."""
    return f"gateway:sha256:{hashlib.sha256(photo.data).hexdigest()[:32]}"
