"""The facegate SDK: a handful of plain functions over the services' gRPC APIs.

Images go in as a path, bytes or an RGB numpy array; plain dataclasses, floats and numpy
vectors come out. Defaults point at `make run`'s local endpoints and are visible in each
signature, so the common case is one call::

    import facegate
    faces = facegate.detect_faces("traveller.jpg")
    score = facegate.compare_faces("live.jpg", "passport.jpg")
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegate.client import channel
from facegate.endpoints import default_target
from facegate.v1 import (
    common_pb2,
    detection_pb2,
    detection_pb2_grpc,
    docverify_pb2,
    docverify_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    watchlist_pb2,
    watchlist_pb2_grpc,
)

ImageLike = str | Path | bytes | np.ndarray

DETECTION = default_target("detection")
EMBEDDING = default_target("embedding")
WATCHLIST = default_target("watchlist")
DOCVERIFY = default_target("docverify")


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image as seen (EXIF applied)."""

    box: tuple[float, float, float, float]  # x, y, width, height
    confidence: float
    landmarks: dict[str, tuple[float, float]]  # left_eye, right_eye, nose, mouth_left, mouth_right
    quality_ok: bool
    quality_failed: tuple[str, ...] = ()  # e.g. ("SHARPNESS",)
    is_subject: bool = False


@dataclass(frozen=True)
class Verification:
    """A 1:1 live-versus-document result."""

    outcome: str  # "MATCH", "NO_MATCH" or "INCONCLUSIVE"
    similarity: float
    threshold: float
    target_far: float
    reasons: tuple[str, ...] = ()
    mrz_valid: bool | None = None
    model_version: str = ""


@dataclass(frozen=True)
class Candidate:
    subject_id: str
    watchlist: str
    score: float
    category: str = ""


def _image(image: ImageLike) -> common_pb2.Image:
    if isinstance(image, np.ndarray):
        from PIL import Image

        out = io.BytesIO()
        Image.fromarray(image.astype(np.uint8)).save(out, format="PNG")
        return common_pb2.Image(data=out.getvalue())
    if isinstance(image, bytes):
        return common_pb2.Image(data=image)
    return common_pb2.Image(data=Path(image).read_bytes())


def _short(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix)


def _face(face: detection_pb2.DetectedFace) -> Face:
    marks = face.landmarks
    return Face(
        box=(face.box.x, face.box.y, face.box.width, face.box.height),
        confidence=face.confidence,
        landmarks={
            name: (getattr(marks, name).x, getattr(marks, name).y)
            for name in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
        },
        quality_ok=face.quality.acceptable,
        quality_failed=tuple(
            _short(common_pb2.QualityCheck.Name(c), "QUALITY_CHECK_") for c in face.quality.failed
        ),
        is_subject=face.is_subject,
    )


def detect_faces(image: ImageLike, *, target: str = DETECTION, timeout: float = 30.0) -> list[Face]:
    """Every face in the image, most confident first (an image without a face gives [])."""
    with channel(target) as ch:
        reply = detection_pb2_grpc.DetectionServiceStub(ch).Detect(
            detection_pb2.DetectRequest(image=_image(image)), timeout=timeout
        )
    return [_face(f) for f in reply.faces]


def _embed(
    image: ImageLike, detection_target: str, embedding_target: str, subject_only: bool, timeout: float
) -> tuple[list[np.ndarray], common_pb2.ModelSpec]:
    """Detect (crops in the loaded model's geometry) then embed; also returns the model spec used."""
    with channel(embedding_target) as ech:
        embed = embedding_pb2_grpc.EmbeddingServiceStub(ech)
        spec = embed.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=timeout)
        options = detection_pb2.DetectionOptions(
            return_crops=True,
            subject_only=subject_only,
            alignment=common_pb2.AlignmentSpec(size=spec.input_size, margin=spec.margin),
        )
        with channel(detection_target) as dch:
            detected = detection_pb2_grpc.DetectionServiceStub(dch).Detect(
                detection_pb2.DetectRequest(image=_image(image), options=options), timeout=timeout
            )
        if not detected.faces:
            return [], spec
        reply = embed.Embed(
            embedding_pb2.EmbedRequest(
                faces=[f.aligned for f in detected.faces], model_version=spec.model_version
            ),
            timeout=timeout,
        )
    return [np.asarray(e.values, dtype=np.float32) for e in reply.embeddings], spec


def _subject_template(
    image: ImageLike, detection_target: str, embedding_target: str, timeout: float
) -> tuple[np.ndarray, common_pb2.ModelSpec]:
    found, spec = _embed(image, detection_target, embedding_target, True, timeout)
    if not found:
        raise ValueError("no face found in the image")
    return found[0], spec


def face_embeddings(
    image: ImageLike,
    *,
    detection_target: str = DETECTION,
    embedding_target: str = EMBEDDING,
    subject_only: bool = False,
    timeout: float = 30.0,
) -> list[np.ndarray]:
    """A unit-length template per face (or for the subject face only), in detection order."""
    return _embed(image, detection_target, embedding_target, subject_only, timeout)[0]


def compare_faces(
    first: ImageLike,
    second: ImageLike,
    *,
    detection_target: str = DETECTION,
    embedding_target: str = EMBEDDING,
    timeout: float = 30.0,
) -> float:
    """Cosine similarity (-1..1) of the subject faces of two images; ValueError when one has none."""
    a, _ = _subject_template(first, detection_target, embedding_target, timeout)
    b, _ = _subject_template(second, detection_target, embedding_target, timeout)
    return float(np.dot(a, b))


def verify_document(
    live: ImageLike,
    *,
    portrait: ImageLike | None = None,
    dg2: bytes | None = None,
    page_scan: ImageLike | None = None,
    mrz: str = "",
    target: str = DOCVERIFY,
    timeout: float = 30.0,
) -> Verification:
    """Live capture against exactly one document portrait source, with optional MRZ checks."""
    sources = [s for s in (portrait, dg2, page_scan) if s is not None]
    if len(sources) != 1:
        raise ValueError("give exactly one of portrait=, dg2= or page_scan=")
    request = docverify_pb2.VerifyRequest(live=_image(live), mrz=mrz)
    if portrait is not None:
        request.portrait_image.CopyFrom(_image(portrait))
    elif dg2 is not None:
        request.dg2 = dg2
    else:
        request.page_scan.CopyFrom(_image(page_scan))
    with channel(target) as ch:
        reply = docverify_pb2_grpc.DocVerifyServiceStub(ch).Verify(request, timeout=timeout)
    return Verification(
        outcome=_short(docverify_pb2.MatchOutcome.Name(reply.outcome), "MATCH_OUTCOME_"),
        similarity=reply.similarity,
        threshold=reply.threshold,
        target_far=reply.target_far,
        reasons=tuple(_short(common_pb2.ReasonCode.Name(r.code), "REASON_CODE_") for r in reply.reasons),
        mrz_valid=reply.mrz.valid if reply.HasField("mrz") else None,
        model_version=reply.model_version,
    )


def search_watchlists(
    image: ImageLike,
    *,
    watchlists: tuple[str, ...] = (),
    top_k: int = 5,
    threshold: float | None = None,
    detection_target: str = DETECTION,
    embedding_target: str = EMBEDDING,
    watchlist_target: str = WATCHLIST,
    timeout: float = 30.0,
) -> list[Candidate]:
    """1:N search of the image's subject face; candidates at or above the threshold, best first."""
    vector, spec = _subject_template(image, detection_target, embedding_target, timeout)
    probe = common_pb2.Embedding(
        values=vector.tolist(), model_id=spec.model_id, model_version=spec.model_version
    )
    request = watchlist_pb2.SearchRequest(probes=[probe], watchlists=list(watchlists), top_k=top_k)
    if threshold is not None:
        request.threshold = threshold
    with channel(watchlist_target) as ch:
        reply = watchlist_pb2_grpc.WatchlistServiceStub(ch).Search(request, timeout=timeout)
    return [
        Candidate(subject_id=c.subject_id, watchlist=c.watchlist, score=c.score, category=c.info.category)
        for c in reply.results[0].candidates
    ]
