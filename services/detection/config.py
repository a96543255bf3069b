"""Detection service settings (environment prefix FACEGATE_DETECTION_).

Defaults and the measurements behind them are in docs/detection.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from facegate.endpoints import DEFAULT_PORTS
from services.detection.alignment import MAX_MARGIN, MAX_SIZE, MIN_MARGIN, MIN_SIZE
from services.detection.quality import QualityThresholds
from services.runtime.config import MetricsPort, Port, ServiceSettings
from services.runtime.model_spec import DEFAULT as MODEL_SPEC


class DetectionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_DETECTION_", extra="ignore", frozen=True)

    port: Port = DEFAULT_PORTS["detection"][0]
    metrics_port: MetricsPort = DEFAULT_PORTS["detection"][1]

    device: str = Field("CPU:0", min_length=1, description="TensorFlow device MTCNN runs on.")
    max_side: int = Field(1024, ge=64, le=8192, description="Longest side of the copy MTCNN runs on.")
    detector_floor: float = Field(
        0.5, ge=0.0, le=1.0, description="MTCNN output-stage threshold; nothing below it is ever seen."
    )
    min_confidence: float = Field(0.9, ge=0.0, le=1.0, description="Default minimum face probability.")
    min_face_size: int = Field(20, ge=0, le=10_000, description="Default minimum face box side, pixels.")
    max_faces: int = Field(50, ge=0, le=10_000, description="Default cap on faces returned (0 = none).")
    subject_selection: Literal["largest", "most_central"] = Field(
        "most_central", description="Default choice of the subject face when there are several."
    )
    landmark_check: bool = Field(True, description="Drop detections whose landmarks no face can have.")
    alignment_size: int = Field(
        MODEL_SPEC.input_size,
        ge=MIN_SIZE,
        le=MAX_SIZE,
        description="Default side of the aligned crop, pixels (the embedding model spec).",
    )
    alignment_margin: float = Field(
        MODEL_SPEC.margin,
        ge=MIN_MARGIN,
        le=MAX_MARGIN,
        description="Default margin around the face in the aligned crop, as a fraction of its size (model spec).",
    )
    max_batch: int = Field(16, ge=1, le=256, description="Most images in one DetectBatch call.")
    tf_intra_op_threads: int = Field(
        1,
        ge=0,
        le=256,
        description="TensorFlow threads inside one op: 1 gives each of the max_parallel MTCNN runs one core "
        "(0 = TensorFlow's default: all cores, per run).",
    )
    tf_inter_op_threads: int = Field(
        1, ge=0, le=256, description="TensorFlow ops run side by side (0 = TensorFlow's default: all cores)."
    )
    max_parallel: int = Field(
        2,
        ge=0,
        le=256,
        description="MTCNN runs at once; more calls wait their turn (0 = no limit but the gRPC pool).",
    )
    batch_retry_empty: bool = Field(
        True, description="Re-run alone any image a batch reports without a face (batch-mode guard)."
    )

    q_min_inter_eye_px: float = Field(
        60.0, ge=0, description="Quality: smallest distance between the eyes, pixels."
    )
    q_max_yaw_deg: float = Field(
        30.0, ge=0, le=90, description="Quality: largest |yaw| (solvePnP on a 3-D mean face), degrees."
    )
    q_max_pitch_deg: float = Field(
        25.0, ge=0, le=90, description="Quality: largest |pitch| (solvePnP on a 3-D mean face), degrees."
    )
    q_max_roll_deg: float = Field(15.0, ge=0, le=180, description="Quality: largest |roll|, degrees.")
    q_min_sharpness: float = Field(
        700.0, ge=0, description="Quality: smallest Laplacian variance of the 64 px normalised face patch."
    )
    q_min_brightness: float = Field(
        50.0, ge=0, le=255, description="Quality: darkest mean luminance of the face patch."
    )
    q_max_brightness: float = Field(
        210.0, ge=0, le=255, description="Quality: brightest mean luminance of the face patch."
    )
    q_min_contrast: float = Field(
        15.0, ge=0, le=255, description="Quality: smallest luminance standard deviation of the face patch."
    )
    q_min_in_frame: float = Field(
        0.98, ge=0, le=1, description="Quality: smallest fraction of the face box inside the image."
    )
    q_min_confidence: float = Field(0.95, ge=0, le=1, description="Quality: smallest detector confidence.")

    @model_validator(mode="after")
    def _brightness_range(self) -> DetectionSettings:
        if self.q_min_brightness > self.q_max_brightness:
            raise ValueError("q_min_brightness must not exceed q_max_brightness")
        return self

    def quality(self) -> QualityThresholds:
        return QualityThresholds(
            min_inter_eye_px=self.q_min_inter_eye_px,
            max_yaw_deg=self.q_max_yaw_deg,
            max_pitch_deg=self.q_max_pitch_deg,
            max_roll_deg=self.q_max_roll_deg,
            min_sharpness=self.q_min_sharpness,
            min_brightness=self.q_min_brightness,
            max_brightness=self.q_max_brightness,
            min_contrast=self.q_min_contrast,
            min_in_frame=self.q_min_in_frame,
            min_confidence=self.q_min_confidence,
        )
