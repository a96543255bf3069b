"""The one face pipeline every caller uses: detect -> choose the subject -> embed.

The SDK, the CLI (eval, calibrate), docverify and the gateway (every enrolment) all turn an image
into a template through :class:`FacePipeline`, so a template enrolled in a watchlist and a probe
taken at a gate are cut and embedded the same way:

* the crop geometry (size, margin) is read from the embedding service's ``GetModelInfo`` and sent
  to detection, so crops always follow the loaded model;
* Embed is called with that model version pinned; if the embedding service has meanwhile been
  restarted with other weights it refuses (FAILED_PRECONDITION), the spec is fetched again and
  the work is redone once, so a stale cache never pairs a template with the wrong model;
* failures fall into one taxonomy (``facegate.errors``): the caller's input was refused
  (InvalidArgument / ResourceExhausted, naming the image), the face is not usable
  (:class:`FaceRejected` with a reason), or a service gave no answer (:class:`ServiceFailure`:
  a decision depending on it fails closed).

What differs between callers - which face is the subject, whether a poor-quality face may be
used, whether a second face in the photo is tolerated - is a :class:`FacePolicy`, not a copy of
the pipeline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
import numpy as np

from facegate.client import open_channel
from facegate.errors import (
    INPUT_CODES,
    FacegateError,
    FaceRejected,
    ModelVersionChanged,
    ServiceFailure,
    from_rpc_error,
    rpc_code,
    rpc_details,
)
from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc, embedding_pb2, embedding_pb2_grpc

T = TypeVar("T")


@dataclass(frozen=True)
class FacePolicy:
    """How a caller wants the face of a photo chosen and judged. Unset fields: service defaults."""

    #: Which face is the subject (detection's SubjectSelection; 0 = the service default).
    subject_selection: int = detection_pb2.SUBJECT_SELECTION_UNSPECIFIED
    min_confidence: float | None = None
    min_face_size: int | None = None
    #: Refuse (FaceRejected low_quality) a subject face that fails detection's quality verdict.
    require_quality: bool = False
    #: Refuse (FaceRejected several_faces) when another face's box area is at least this fraction
    #: of the subject's; None tolerates other faces (and asks detection for the subject only).
    other_face_ratio: float | None = None
    #: Alignment margin instead of the model's own (for tuning the ModelSpec only).
    margin: float | None = None
    #: Return (and embed, in :meth:`FacePipeline.templates`) every face, not only the subject.
    all_faces: bool = False
    #: Detect on a copy scaled to ``min_face_size`` (detection's kiosk profile): faster, and
    #: faces smaller than ``min_face_size`` are not searched for.
    scale_to_min_face: bool = False

    def options(self, spec: common_pb2.ModelSpec) -> detection_pb2.DetectionOptions:
        """The DetectRequest options for this policy under the model ``spec``."""
        options = detection_pb2.DetectionOptions(
            return_crops=True,
            subject_only=not self.all_faces and self.other_face_ratio is None,
            subject_selection=self.subject_selection,
            alignment=common_pb2.AlignmentSpec(
                size=spec.input_size, margin=spec.margin if self.margin is None else self.margin
            ),
        )
        if self.min_confidence is not None:
            options.min_confidence = self.min_confidence
        if self.min_face_size is not None:
            options.min_face_size = self.min_face_size
        if self.scale_to_min_face:
            options.scale_to_min_face = True
        return options


#: The subject of any photo, as the detection service chooses it (SDK default).
SUBJECT = FacePolicy()
#: Every face in the photo.
ALL_FACES = FacePolicy(all_faces=True)
#: Accuracy evaluation: the most central face, whatever its quality (as LFW protocols expect).
EVALUATION = FacePolicy(subject_selection=detection_pb2.SUBJECT_SELECTION_MOST_CENTRAL)
#: Enrolment: exactly one acceptable face; smaller background faces (< half the area) are ignored.
ENROLMENT = FacePolicy(require_quality=True, other_face_ratio=0.5)


@dataclass(frozen=True)
class Template:
    """A face template with the face it came from and the model that made it."""

    vector: np.ndarray  # float32, unit length
    face: detection_pb2.DetectedFace
    spec: common_pb2.ModelSpec

    @property
    def model_version(self) -> str:
        return self.spec.model_version

    @property
    def quality_score(self) -> float:
        """Fraction of the face's quality measures that passed (1.0 when none were taken)."""
        measures = self.face.quality.measures
        return sum(m.passed for m in measures) / len(measures) if measures else 1.0

    def to_proto(self) -> common_pb2.Embedding:
        return common_pb2.Embedding(
            values=self.vector.tolist(), model_id=self.spec.model_id, model_version=self.spec.model_version
        )


def subject_face(response: detection_pb2.DetectResponse) -> detection_pb2.DetectedFace | None:
    """The subject face of a Detect answer, or None when there is none."""
    if response.subject_index < 0 or response.subject_index >= len(response.faces):
        return None
    return response.faces[response.subject_index]


def failed_checks(quality: common_pb2.Quality) -> str:
    """The failed quality checks as short lower-case names, e.g. "yaw, sharpness"."""
    names = [common_pb2.QualityCheck.Name(c).removeprefix("QUALITY_CHECK_").lower() for c in quality.failed]
    return ", ".join(names) or "quality"


def translate(exc: grpc.RpcError, service: str, what: str = "") -> FacegateError:
    """A failed call as the pipeline's taxonomy: refused input keeps its code, all else is a failure."""
    code = rpc_code(exc)
    if code in INPUT_CODES:
        error = from_rpc_error(exc)
        error.message = f"{what}: {error.message}" if what else error.message
    elif code == grpc.StatusCode.FAILED_PRECONDITION and service == "embedding":
        error = ModelVersionChanged(rpc_details(exc))
    else:
        error = ServiceFailure(f"{service} service: {code.name}: {rpc_details(exc)[:200]}", code)
    error.service = service
    return error


class FacePipeline:
    """Detection and embedding as one thread-safe pipeline over two channels."""

    def __init__(
        self, detection: grpc.Channel, embedding: grpc.Channel, *, owns_channels: bool = False
    ) -> None:
        self.detection = detection_pb2_grpc.DetectionServiceStub(detection)
        self.embedding = embedding_pb2_grpc.EmbeddingServiceStub(embedding)
        self._channels = (detection, embedding) if owns_channels else ()
        self._spec: common_pb2.ModelSpec | None = None
        self._spec_lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        detection_target: str,
        embedding_target: str,
        *,
        budget_s: float | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> FacePipeline:
        """A pipeline on channels of its own (closed by :meth:`close`); ``budget_s`` caps each call,
        ``credentials`` makes them TLS (e.g. the services' mutual TLS)."""
        return cls(
            open_channel(detection_target, budget_s=budget_s, credentials=credentials),
            open_channel(embedding_target, budget_s=budget_s, credentials=credentials),
            owns_channels=True,
        )

    def close(self) -> None:
        for ch in self._channels:
            ch.close()

    def __enter__(self) -> FacePipeline:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- steps -------------------------------------------------------------------------------

    def model_spec(self, refresh: bool = False) -> common_pb2.ModelSpec:
        """The embedding model's spec (cached after the first successful call)."""
        with self._spec_lock:
            if self._spec is None or refresh:
                try:
                    self._spec = self.embedding.GetModelInfo(embedding_pb2.GetModelInfoRequest())
                except grpc.RpcError as exc:
                    raise translate(exc, "embedding") from None
            return self._spec

    def detect_async(self, image: common_pb2.Image, policy: FacePolicy = SUBJECT) -> grpc.Future:
        """Start a Detect call in the model's geometry; pair with :meth:`detect_result`."""
        request = detection_pb2.DetectRequest(image=image, options=policy.options(self.model_spec()))
        return self.detection.Detect.future(request)

    @staticmethod
    def detect_result(call: grpc.Future, what: str = "image") -> detection_pb2.DetectResponse:
        try:
            return call.result()
        except grpc.RpcError as exc:
            raise translate(exc, "detection", what) from None

    def detect(
        self, image: common_pb2.Image, policy: FacePolicy = SUBJECT, what: str = "image"
    ) -> detection_pb2.DetectResponse:
        return self.detect_result(self.detect_async(image, policy), what)

    def embed(self, faces: Sequence[common_pb2.AlignedFace]) -> list[np.ndarray]:
        """Unit templates for aligned ``faces`` from the pinned model, in one round trip.

        Raises ModelVersionChanged (after refreshing the cached spec) when the embedding service
        now runs other weights: the crops were cut for the old geometry, so the caller redoes them.
        """
        spec = self.model_spec()
        try:
            reply = self.embedding.Embed(
                embedding_pb2.EmbedRequest(faces=list(faces), model_version=spec.model_version)
            )
        except grpc.RpcError as exc:
            error = translate(exc, "embedding", "face crop")
            if isinstance(error, ModelVersionChanged):
                self.model_spec(refresh=True)
            raise error from None
        if len(reply.embeddings) != len(faces):
            raise ServiceFailure(
                f"embedding service returned {len(reply.embeddings)} templates for {len(faces)} faces"
            )
        if any(e.model_version != spec.model_version for e in reply.embeddings):
            raise ServiceFailure("embedding service answered with another model version")
        return [np.asarray(e.values, dtype=np.float32) for e in reply.embeddings]

    @staticmethod
    def choose(response: detection_pb2.DetectResponse, policy: FacePolicy, what: str = "image"):
        """The subject face allowed by ``policy``, or FaceRejected saying why not."""
        face = subject_face(response)
        if face is None:
            raise FaceRejected(FaceRejected.NO_FACE, f"no face found in the {what}")
        if policy.other_face_ratio is not None:
            area = face.box.width * face.box.height
            others = sum(
                1
                for i, f in enumerate(response.faces)
                if i != response.subject_index
                and f.box.width * f.box.height >= policy.other_face_ratio * area
            )
            if others:  # which face is the subject would be a guess: never use a guess
                raise FaceRejected(
                    FaceRejected.SEVERAL_FACES, f"{others + 1} faces in the {what}; one is needed"
                )
        if policy.require_quality and not face.quality.acceptable:
            raise FaceRejected(FaceRejected.LOW_QUALITY, f"the {what} fails {failed_checks(face.quality)}")
        return face

    # ---- whole pipeline ------------------------------------------------------------------------

    def template(
        self, image: common_pb2.Image, policy: FacePolicy = SUBJECT, what: str = "image"
    ) -> Template:
        """The template of the image's subject face under ``policy``."""

        def run() -> Template:
            face = self.choose(self.detect(image, policy, what), policy, what)
            (vector,) = self.embed([face.aligned])
            return Template(vector, face, self.model_spec())

        return self.redo_on_model_change(run)

    def templates(
        self, image: common_pb2.Image, policy: FacePolicy = SUBJECT, what: str = "image"
    ) -> list[Template]:
        """A template for every face detection returns (only the subject when it asks for one)."""

        def run() -> list[Template]:
            response = self.detect(image, policy, what)
            if not response.faces:
                return []
            vectors = self.embed([f.aligned for f in response.faces])
            spec = self.model_spec()
            return [Template(v, f, spec) for v, f in zip(vectors, response.faces, strict=True)]

        return self.redo_on_model_change(run)

    @staticmethod
    def redo_on_model_change(run: Callable[[], T]) -> T:
        """Run ``run`` again once if the embedding model changed under it (the spec is refreshed)."""
        try:
            return run()
        except ModelVersionChanged:
            try:
                return run()
            except ModelVersionChanged:
                raise ServiceFailure(
                    "embedding model changed twice during the request", grpc.StatusCode.FAILED_PRECONDITION
                ) from None
