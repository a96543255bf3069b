"""The detection and embedding services as docverify sees them: gRPC stubs with deadlines.

Docverify never imports those services' code; it calls their RPCs. Two kinds of failure are kept
apart because they lead to different answers:

* the downstream service is unreachable, slow, still loading or broken (UNAVAILABLE,
  DEADLINE_EXCEEDED, INTERNAL, ...) -> :class:`DownstreamUnavailable`; Verify turns it into an
  INCONCLUSIVE decision with reason SERVICE_UNAVAILABLE (fail closed, never MATCH);
* the downstream service refused *our input* (INVALID_ARGUMENT, RESOURCE_EXHAUSTED) ->
  :class:`DownstreamRejected`, carrying the original status, so the caller learns which image
  was bad.

The embedding model's spec is fetched once (GetModelInfo) and cached: it is the crop geometry
we pass to detection and the model version whose thresholds we apply. If embedding is restarted
with other weights, Embed refuses our pinned version (FAILED_PRECONDITION); we then refetch the
spec once and redo the request, so a stale cache never pairs a score with the wrong threshold.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import grpc

from facegate.client import channel
from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc, embedding_pb2, embedding_pb2_grpc
from services.runtime.errors import FacegateError, Unavailable

_REJECTIONS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)


class DownstreamUnavailable(Unavailable):
    """A downstream call could not give an answer; any decision depending on it fails closed."""


class DownstreamRejected(FacegateError):
    """A downstream service refused an input we forwarded; keeps that service's status code."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ModelVersionChanged(Exception):
    """Embed refused the model version we pinned: the embedding service now runs other weights."""


def _translate(exc: grpc.RpcError, service: str) -> FacegateError | ModelVersionChanged:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    if code in _REJECTIONS:
        return DownstreamRejected(code, details)
    if code == grpc.StatusCode.FAILED_PRECONDITION and service == "embedding":
        return ModelVersionChanged(details)
    return DownstreamUnavailable(f"{service} service: {code.name}: {details[:200]}")


class Downstream:
    """Channels and stubs for detection and embedding; thread-safe, one instance per servicer."""

    def __init__(self, detection_target: str, embedding_target: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._detection_channel = channel(detection_target)
        self._embedding_channel = channel(embedding_target)
        self.detection = detection_pb2_grpc.DetectionServiceStub(self._detection_channel)
        self.embedding = embedding_pb2_grpc.EmbeddingServiceStub(self._embedding_channel)
        self._spec: common_pb2.ModelSpec | None = None
        self._spec_lock = threading.Lock()

    def close(self) -> None:
        self._detection_channel.close()
        self._embedding_channel.close()

    def model_spec(self, refresh: bool = False) -> common_pb2.ModelSpec:
        """The embedding model's spec (cached after the first successful call)."""
        with self._spec_lock:
            if self._spec is None or refresh:
                try:
                    self._spec = self.embedding.GetModelInfo(
                        embedding_pb2.GetModelInfoRequest(), timeout=self.timeout_s
                    )
                except grpc.RpcError as exc:
                    raise _unavailable(exc, "embedding") from None
            return self._spec

    def detect_async(self, request: detection_pb2.DetectRequest) -> grpc.Future:
        """Start a Detect call; pair with :meth:`detect_result`. Lets two detections overlap."""
        return self.detection.Detect.future(request, timeout=self.timeout_s)

    @staticmethod
    def detect_result(future: grpc.Future) -> detection_pb2.DetectResponse:
        try:
            return future.result()
        except grpc.RpcError as exc:
            translated = _translate(exc, "detection")
            raise translated from None

    def embed(self, faces: Sequence[common_pb2.AlignedFace]) -> tuple[list[list[float]], str]:
        """Templates for ``faces`` and the model version that made them, in one round trip.

        Raises ModelVersionChanged (after refreshing the cached spec) when the embedding service
        now runs other weights: the crops were cut for the old geometry, so the caller redoes them.
        """
        spec = self.model_spec()
        try:
            reply = self.embedding.Embed(
                embedding_pb2.EmbedRequest(faces=list(faces), model_version=spec.model_version),
                timeout=self.timeout_s,
            )
        except grpc.RpcError as exc:
            translated = _translate(exc, "embedding")
            if isinstance(translated, ModelVersionChanged):
                self.model_spec(refresh=True)
            raise translated from None
        if len(reply.embeddings) != len(faces):
            raise DownstreamUnavailable(
                f"embedding service returned {len(reply.embeddings)} templates for {len(faces)} faces"
            )
        if any(e.model_version != spec.model_version for e in reply.embeddings):
            raise DownstreamUnavailable("embedding service answered with another model version")
        return [list(e.values) for e in reply.embeddings], spec.model_version


def _unavailable(exc: grpc.RpcError, service: str) -> DownstreamUnavailable:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    return DownstreamUnavailable(f"{service} service: {code.name}: {details[:200]}")
