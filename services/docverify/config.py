"""Docverify service settings (environment prefix FACEGATE_DOCVERIFY_).

Two face policies live here on purpose: the *live* capture is judged by the detection service's
gate-camera quality bounds, while the *document portrait* (a tiny, often tinted print or a chip
JPEG of ~ 35 mm) gets its own, looser bounds (see docs/docverify.md, "Portrait quality").
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from facegate.endpoints import DEFAULT_PORTS, default_target
from facegate.single_face import DEFAULT_OTHER_FACE_RATIO
from facegate.thresholds import CALIBRATION_DIR
from services.runtime.config import MetricsPort, Port, ServiceSettings


class DocverifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_DOCVERIFY_", extra="ignore", frozen=True)

    port: Port = DEFAULT_PORTS["docverify"][0]
    metrics_port: MetricsPort = DEFAULT_PORTS["docverify"][1]

    detection_target: str = Field(
        default_target("detection"), min_length=1, description="host:port of the detection service."
    )
    embedding_target: str = Field(
        default_target("embedding"), min_length=1, description="host:port of the embedding service."
    )
    downstream_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Deadline of each detection/embedding call; past it: SERVICE_UNAVAILABLE.",
    )
    calibration_dir: Path = Field(
        CALIBRATION_DIR,
        description="Folder of calibrated thresholds (`<model_version>.sources.json`: per portrait source and size).",
    )
    default_far: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Operating point when a request names none; unset: the calibration file's default (0.001).",
    )
    grey_zone: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="Similarities in [threshold - grey_zone, threshold) are INCONCLUSIVE instead of NO_MATCH.",
    )
    dg2_max_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest DG2 accepted (chips hold ~ 15-100 kB).",
    )

    # Live capture: detection service defaults apply unless set here.
    live_min_face_size: int | None = Field(
        None, ge=12, le=4096, description="Smallest live face side in pixels; unset: detection's default."
    )
    live_kiosk_min_face_size: int | None = Field(
        100,
        ge=21,
        le=4096,
        description=(
            "Kiosk profile: look for a live face at least this large on a copy scaled to it (fast); "
            "only when none is found does the full search run. Unset: always the full search."
        ),
    )
    live_other_face_ratio: float = Field(
        DEFAULT_OTHER_FACE_RATIO,
        gt=0,
        le=1,
        description=(
            "Another live face counts as a second person (MULTIPLE_FACES) when its size (square root "
            "of the box area) is at least this fraction of the traveller's; smaller ones are reported "
            "as background faces, not refused."
        ),
    )

    # Document portrait: a printed or chip photo, small and often tinted.
    portrait_min_face_size: int = Field(
        20, ge=12, le=4096, description="Smallest face side searched for on a document image, pixels."
    )
    portrait_min_confidence: float = Field(
        0.8, ge=0, le=1, description="MTCNN probability a document portrait face must reach."
    )
    portrait_profile_face_fraction: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="DG2s: first look for a face at least this fraction of the chip portrait's "
        "shorter side on a copy scaled to it (fast); only when none is found does the full search "
        "run. 0: always the full search. Portrait images and page scans always get the full search.",
    )
    portrait_min_inter_eye_px: float = Field(
        20.0, ge=0, description="Smallest eye distance on the portrait, pixels (specimen pages: 23-86)."
    )
    portrait_max_yaw_deg: float = Field(
        35.0,
        gt=0,
        le=90,
        description=(
            "Largest portrait |yaw| compared, degrees (ICAO asks 5, noted on the measure beyond it; "
            "frontal specimens: 0-5)."
        ),
    )
    portrait_max_roll_deg: float = Field(20.0, gt=0, le=90, description="Largest portrait |roll|, degrees.")
    portrait_min_sharpness: float = Field(
        100.0,
        ge=0,
        description="Smallest Laplacian variance of the normalised face patch (specimens: 1884+).",
    )
    portrait_min_contrast: float = Field(
        15.0, ge=0, description="Smallest luminance standard deviation on the face (specimens: 24+)."
    )
    portrait_min_brightness: float = Field(
        60.0, ge=0, le=255, description="Darkest mean portrait luminance (specimens: 104-179)."
    )
    portrait_max_brightness: float = Field(
        225.0, ge=0, le=255, description="Brightest mean portrait luminance (specimens: 104-179)."
    )
