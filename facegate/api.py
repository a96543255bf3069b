"""The facegate SDK: a :class:`Client` and a handful of plain functions over the services.

Images go in as a path, bytes or an RGB numpy array; plain dataclasses, floats and numpy
vectors come out. Defaults point at `make run`'s local endpoints and are visible in each
signature, so the common case is one call::

    import facegate
    faces = facegate.detect_faces("traveller.jpg")
    score = facegate.compare_faces("live.jpg", "passport.jpg")

A :class:`Client` keeps its channels open across calls (use it as a context manager); the module
functions reuse one cached client per set of targets. Every call goes through the client layer's
face pipeline (``facegate.pipeline``) and raises ``facegate.errors`` exceptions, never a raw
``grpc.RpcError``: each carries the gRPC ``code`` and a ``message``; bad input and faceless
images raise subclasses of ``ValueError`` too.

For users of the ``face_recognition`` library, the differences kept on purpose:

* ``face_locations`` returns ``(top, right, bottom, left)`` tuples as there; ``detect_faces`` gives
  richer :class:`Face` records (box as x, y, width, height; landmarks; quality verdict).
* ``face_encodings`` returns unit-length 128-d FaceNet templates compared by cosine similarity
  (higher = more alike), not dlib vectors compared by Euclidean distance (lower = more alike).
* ``compare_faces`` takes two images and returns their similarity; the calibrated threshold the
  system decides with lives in the services (``verify_document`` returns it with the outcome).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from facegate.client import open_channel
from facegate.context import call_context
from facegate.endpoints import default_target
from facegate.errors import from_rpc_error
from facegate.pipeline import ALL_FACES, SUBJECT, FacePipeline
from facegate.v1 import (
    common_pb2,
    detection_pb2,
    docverify_pb2,
    docverify_pb2_grpc,
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
    display_name: str = ""  # what an officer reads on a hit (never logged)

    @classmethod
    def from_proto(cls, c: watchlist_pb2.Candidate) -> Candidate:
        """One candidate as the watchlist service (and the gateway's Identify) report it."""
        return cls(
            subject_id=c.subject_id,
            watchlist=c.watchlist,
            score=c.score,
            category=c.info.category,
            display_name=c.info.display_name,
        )


def as_image(image: ImageLike) -> common_pb2.Image:
    """An ``Image`` message from a path, encoded bytes or an RGB array (sent as PNG)."""
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


def document_request(
    live: ImageLike,
    *,
    portrait: ImageLike | None = None,
    dg2: bytes | None = None,
    page_scan: ImageLike | None = None,
    mrz: str = "",
) -> docverify_pb2.VerifyRequest:
    """A live capture with exactly one portrait source (ValueError otherwise) and an optional MRZ."""
    sources = [s for s in (portrait, dg2, page_scan) if s is not None]
    if len(sources) != 1:
        raise ValueError("give exactly one of portrait=, dg2= or page_scan=")
    request = docverify_pb2.VerifyRequest(live=as_image(live), mrz=mrz)
    if portrait is not None:
        request.portrait_image.CopyFrom(as_image(portrait))
    elif dg2 is not None:
        request.dg2 = dg2
    else:
        request.page_scan.CopyFrom(as_image(page_scan))
    return request


def _location(face: Face) -> tuple[int, int, int, int]:
    x, y, w, h = face.box
    return round(y), round(x + w), round(y + h), round(x)


def _verification(reply: docverify_pb2.VerifyResponse) -> Verification:
    return Verification(
        outcome=_short(docverify_pb2.MatchOutcome.Name(reply.outcome), "MATCH_OUTCOME_"),
        similarity=reply.similarity,
        threshold=reply.threshold,
        target_far=reply.target_far,
        reasons=tuple(_short(common_pb2.ReasonCode.Name(r.code), "REASON_CODE_") for r in reply.reasons),
        mrz_valid=reply.mrz.valid if reply.HasField("mrz") else None,
        model_version=reply.model_version,
    )


class Client:
    """Open channels to the services, reused by every call; close it (or use ``with``) when done.

    ``timeout`` bounds each method call as a whole (all the RPCs it makes together).
    """

    def __init__(
        self,
        *,
        detection: str = DETECTION,
        embedding: str = EMBEDDING,
        watchlist: str = WATCHLIST,
        docverify: str = DOCVERIFY,
        timeout: float = 30.0,
    ) -> None:
        self.timeout = timeout
        self._targets = {"watchlist": watchlist, "docverify": docverify}
        self._channels: dict[str, grpc.Channel] = {}
        self.pipeline = FacePipeline.connect(detection, embedding)

    def _channel(self, label: str) -> grpc.Channel:
        if label not in self._channels:
            self._channels[label] = open_channel(self._targets[label])
        return self._channels[label]

    def close(self) -> None:
        self.pipeline.close()
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _call(self, timeout: float | None) -> Iterator[None]:
        """One SDK call: one request id and deadline for all its RPCs; gRPC errors as facegate errors."""
        with call_context(timeout_s=self.timeout if timeout is None else timeout):
            try:
                yield
            except grpc.RpcError as exc:
                raise from_rpc_error(exc) from None

    # ---- faces ---------------------------------------------------------------------------------

    def detect_faces(self, image: ImageLike, *, timeout: float | None = None) -> list[Face]:
        """Every face in the image, most confident first (an image without a face gives [])."""
        options = detection_pb2.DetectionOptions()  # the service's own defaults, no crops needed
        with self._call(timeout):
            reply = self.pipeline.detection.Detect(
                detection_pb2.DetectRequest(image=as_image(image), options=options)
            )
        return [_face(f) for f in reply.faces]

    def face_locations(
        self, image: ImageLike, *, timeout: float | None = None
    ) -> list[tuple[int, int, int, int]]:
        """``(top, right, bottom, left)`` of every face, as ``face_recognition.face_locations`` gives."""
        return [_location(f) for f in self.detect_faces(image, timeout=timeout)]

    def face_embeddings(
        self, image: ImageLike, *, subject_only: bool = False, timeout: float | None = None
    ) -> list[np.ndarray]:
        """A unit-length template per face (or for the subject face only), in detection order."""
        with self._call(timeout):
            found = self.pipeline.templates(as_image(image), SUBJECT if subject_only else ALL_FACES)
        return [t.vector for t in found]

    face_encodings = face_embeddings

    def subject_template(self, image: ImageLike, *, timeout: float | None = None) -> np.ndarray:
        """The subject face's template; FaceRejected (a ValueError) when the image has no face."""
        with self._call(timeout):
            return self.pipeline.template(as_image(image), SUBJECT).vector

    def compare_faces(self, first: ImageLike, second: ImageLike, *, timeout: float | None = None) -> float:
        """Cosine similarity (-1..1) of the subject faces of two images; ValueError when one has none."""
        with self._call(timeout):
            a = self.pipeline.template(as_image(first), SUBJECT, "first image")
            b = self.pipeline.template(as_image(second), SUBJECT, "second image")
        return float(np.dot(a.vector, b.vector))

    # ---- documents and watchlists --------------------------------------------------------------

    def verify_document(
        self,
        live: ImageLike,
        *,
        portrait: ImageLike | None = None,
        dg2: bytes | None = None,
        page_scan: ImageLike | None = None,
        mrz: str = "",
        timeout: float | None = None,
    ) -> Verification:
        """Live capture against exactly one document portrait source, with optional MRZ checks."""
        request = document_request(live, portrait=portrait, dg2=dg2, page_scan=page_scan, mrz=mrz)
        with self._call(timeout):
            reply = docverify_pb2_grpc.DocVerifyServiceStub(self._channel("docverify")).Verify(request)
        return _verification(reply)

    def search_watchlists(
        self,
        image: ImageLike,
        *,
        watchlists: tuple[str, ...] = (),
        top_k: int = 5,
        threshold: float | None = None,
        timeout: float | None = None,
    ) -> list[Candidate]:
        """1:N search of the image's subject face; candidates at or above the threshold, best first."""
        with self._call(timeout):
            probe = self.pipeline.template(as_image(image), SUBJECT)
            request = watchlist_pb2.SearchRequest(
                probes=[probe.to_proto()], watchlists=list(watchlists), top_k=top_k
            )
            if threshold is not None:
                request.threshold = threshold
            reply = watchlist_pb2_grpc.WatchlistServiceStub(self._channel("watchlist")).Search(request)
        return [Candidate.from_proto(c) for c in reply.results[0].candidates]


# ---- module functions: one cached client per set of targets --------------------------------------


@functools.lru_cache(maxsize=8)
def client_for(
    detection: str = DETECTION,
    embedding: str = EMBEDDING,
    watchlist: str = WATCHLIST,
    docverify: str = DOCVERIFY,
) -> Client:
    """The shared client for these targets (module functions use it; it stays open)."""
    return Client(detection=detection, embedding=embedding, watchlist=watchlist, docverify=docverify)


def detect_faces(image: ImageLike, *, target: str = DETECTION, timeout: float = 30.0) -> list[Face]:
    """Every face in the image, most confident first (an image without a face gives [])."""
    return client_for(detection=target).detect_faces(image, timeout=timeout)


def face_locations(
    image: ImageLike, *, target: str = DETECTION, timeout: float = 30.0
) -> list[tuple[int, int, int, int]]:
    """``(top, right, bottom, left)`` of every face, as in ``face_recognition``."""
    return client_for(detection=target).face_locations(image, timeout=timeout)


def face_embeddings(
    image: ImageLike,
    *,
    detection_target: str = DETECTION,
    embedding_target: str = EMBEDDING,
    subject_only: bool = False,
    timeout: float = 30.0,
) -> list[np.ndarray]:
    """A unit-length template per face (or for the subject face only), in detection order."""
    client = client_for(detection=detection_target, embedding=embedding_target)
    return client.face_embeddings(image, subject_only=subject_only, timeout=timeout)


face_encodings = face_embeddings


def compare_faces(
    first: ImageLike,
    second: ImageLike,
    *,
    detection_target: str = DETECTION,
    embedding_target: str = EMBEDDING,
    timeout: float = 30.0,
) -> float:
    """Cosine similarity (-1..1) of the subject faces of two images; ValueError when one has none."""
    client = client_for(detection=detection_target, embedding=embedding_target)
    return client.compare_faces(first, second, timeout=timeout)


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
    return client_for(docverify=target).verify_document(
        live, portrait=portrait, dg2=dg2, page_scan=page_scan, mrz=mrz, timeout=timeout
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
    client = client_for(detection=detection_target, embedding=embedding_target, watchlist=watchlist_target)
    return client.search_watchlists(
        image, watchlists=watchlists, top_k=top_k, threshold=threshold, timeout=timeout
    )
