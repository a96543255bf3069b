"""gRPC servicer for the detection service: decode, detect, filter, pick the subject, align, judge."""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc
import numpy as np

from facegate.context import remaining_s
from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from services.detection import metrics
from services.detection.alignment import align_face
from services.detection.config import DetectionSettings
from services.detection.detector import Detection, FaceDetector, RawFace
from services.detection.geometry import plausible_face
from services.detection.policy import Policy, resolve, subject_index, trim
from services.detection.quality import QualityThresholds, assess
from services.runtime.config import RuntimeSettings
from services.runtime.errors import DeadlineExceeded, FacegateError, InvalidArgument, ResourceExhausted
from services.runtime.images import decode_message
from services.runtime.server import run_service
from services.runtime.slots import FifoSlots
from services.runtime.tf_threads import configure_threads


class DetectionService(detection_pb2_grpc.DetectionServiceServicer):
    service_names = ("facegate.v1.DetectionService",)

    def __init__(self, settings: DetectionSettings, runtime: RuntimeSettings) -> None:
        self.settings = settings
        self.runtime = runtime
        self.thresholds: QualityThresholds = settings.quality()
        self.detector = FaceDetector(
            device=settings.device,
            max_side=settings.max_side,
            threshold_onet=settings.detector_floor,
            retry_empty_alone=settings.batch_retry_empty,
        )
        self._slots = FifoSlots(settings.max_parallel) if settings.max_parallel else None

    def register(self, server: grpc.Server) -> None:
        detection_pb2_grpc.add_DetectionServiceServicer_to_server(self, server)

    def warmup(self) -> None:
        configure_threads(self.settings.tf_intra_op_threads, self.settings.tf_inter_op_threads)
        self.detector.load()

    def close(self) -> None:
        pass

    # --- RPCs -------------------------------------------------------------------------------

    def Detect(self, request: detection_pb2.DetectRequest, context: grpc.ServicerContext):
        policy = resolve(request.options, self.settings)
        try:
            rgb = self._decode(request.image)
        except FacegateError:
            metrics.IMAGES.labels("error").inc()
            raise
        detection = self._detect([rgb], policy, mode="single")[0]
        return self._response(rgb, detection, policy)

    def DetectBatch(self, request: detection_pb2.DetectBatchRequest, context: grpc.ServicerContext):
        count = len(request.images)
        if count == 0:
            raise InvalidArgument("the batch holds no images; send at least one")
        if count > self.settings.max_batch:
            raise ResourceExhausted(f"the batch holds {count} images; the limit is {self.settings.max_batch}")
        policy = resolve(request.options, self.settings)
        metrics.BATCH_SIZE.observe(count)
        items: list[detection_pb2.DetectBatchItem | None] = [None] * count
        decoded: list[tuple[int, np.ndarray]] = []
        for index, image in enumerate(request.images):
            try:
                decoded.append((index, self._decode(image)))
            except FacegateError as exc:
                metrics.IMAGES.labels("error").inc()
                items[index] = detection_pb2.DetectBatchItem(
                    error=common_pb2.ItemError(
                        code=exc.code.value[0], message=f"images[{index}]: {exc.message}"
                    )
                )
        if decoded:
            detections = self._detect([rgb for _, rgb in decoded], policy, mode="batch")
            for (index, rgb), detection in zip(decoded, detections, strict=True):
                items[index] = detection_pb2.DetectBatchItem(response=self._response(rgb, detection, policy))
        return detection_pb2.DetectBatchResponse(items=items)

    # --- steps ------------------------------------------------------------------------------

    def _decode(self, image: common_pb2.Image) -> np.ndarray:
        return decode_message(
            image, max_bytes=self.runtime.image_max_bytes, max_pixels=self.runtime.image_max_pixels
        )

    def _detect(self, images: Sequence[np.ndarray], policy: Policy, mode: str) -> list[Detection]:
        """MTCNN in one of ``max_parallel`` slots, first come first served; a call whose deadline
        passes while it waits leaves the queue without running (its caller has given up)."""
        if self._slots is None:
            return self._detect_now(images, policy, mode)
        if not self._slots.acquire(timeout=remaining_s()):
            metrics.QUEUE_EXPIRED.inc()
            raise DeadlineExceeded("the call's deadline passed while it waited for a detection slot")
        try:
            return self._detect_now(images, policy, mode)
        finally:
            self._slots.release()

    def _detect_now(self, images: Sequence[np.ndarray], policy: Policy, mode: str) -> list[Detection]:
        started = time.perf_counter()
        detections = self.detector.detect(
            images, min_face_px=max(policy.min_face_size, 1), scale_to_min_face=policy.scale_to_min_face
        )
        metrics.DETECTION_LATENCY.labels(mode).observe(time.perf_counter() - started)
        retried = sum(1 for d in detections if d.retried_alone)
        if retried:
            metrics.BATCH_RETRIES.inc(retried)
        return detections

    def _keep(self, face: RawFace, policy: Policy) -> bool:
        if face.confidence < policy.min_confidence:
            return False
        if min(face.width, face.height) < policy.min_face_size:
            return False
        if self.settings.landmark_check and not plausible_face(face.landmarks, face.width):
            metrics.DROPPED_IMPLAUSIBLE.inc()
            return False
        return True

    def _response(
        self, rgb: np.ndarray, detection: Detection, policy: Policy
    ) -> detection_pb2.DetectResponse:
        height, width = rgb.shape[:2]
        faces = [f for f in detection.faces if self._keep(f, policy)]
        metrics.FACES_PER_IMAGE.observe(len(faces))
        metrics.IMAGES.labels("face" if faces else "no_face").inc()
        subject = subject_index(faces, width, height, policy.selection)
        kept, kept_subject = trim(faces, subject, policy)
        out = []
        for i, face in enumerate(kept):
            quality = assess(rgb, face, self.thresholds)
            for check in quality.failed:
                metrics.QUALITY_REJECTS.labels(common_pb2.QualityCheck.Name(check)).inc()
            message = detection_pb2.DetectedFace(
                box=common_pb2.BoundingBox(
                    x=face.box[0], y=face.box[1], width=face.width, height=face.height
                ),
                confidence=face.confidence,
                landmarks=_landmarks(face.landmarks),
                quality=quality,
                is_subject=i == kept_subject,
            )
            if policy.return_crops:
                crop = align_face(rgb, face.landmarks, policy.align_size, policy.align_margin)
                message.aligned.CopyFrom(
                    common_pb2.AlignedFace(
                        rgb=crop.tobytes(), width=crop.shape[1], height=crop.shape[0], channels=3
                    )
                )
            out.append(message)
        return detection_pb2.DetectResponse(
            faces=out,
            subject_index=kept_subject,
            image_width=width,
            image_height=height,
            detection_scale=detection.scale,
            faces_total=len(faces),
        )


def _landmarks(points: np.ndarray) -> common_pb2.Landmarks:
    p = [common_pb2.Point(x=float(x), y=float(y)) for x, y in points]
    return common_pb2.Landmarks(left_eye=p[0], right_eye=p[1], nose=p[2], mouth_left=p[3], mouth_right=p[4])


def main() -> None:
    run_service("detection", DetectionSettings, DetectionService)
