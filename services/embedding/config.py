"""Embedding service settings (environment prefix FACEGATE_EMBEDDING_; the cache reads REDIS_URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from facegate.endpoints import DEFAULT_PORTS
from services.runtime.config import MetricsPort, Port, ServiceSettings

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class EmbeddingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_EMBEDDING_", extra="ignore", frozen=True)

    port: Port = DEFAULT_PORTS["embedding"][0]
    metrics_port: MetricsPort = DEFAULT_PORTS["embedding"][1]

    models_dir: Path = Field(
        REPO / "models",
        description="Folder holding facenet.keras, facenet.tflite, facenet_int8.tflite and their manifest "
        "(from `make models`).",
    )
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="auto: first GPU TensorFlow sees, else CPU; gpu: fail at start without one."
    )
    runtime: Literal["auto", "tensorflow", "tflite", "tflite-int8"] = Field(
        "auto",
        description="auto: tflite-int8 on a CPU, tensorflow on a GPU. tflite-int8: the int8 "
        "(dynamic-range) network through XNNPACK, ~5x cheaper than float32 here, model version "
        "FACENET_INT8; tflite: the float32 network through XNNPACK, the same rows as the "
        "TensorFlow graph (model version FACENET). The watchlist's model version must match.",
    )
    flip_fusion: bool = Field(
        True,
        description="Fuse each crop's mirror image into its embedding (measured to help; doubles model cost).",
    )
    max_faces_per_request: int = Field(
        64, ge=1, le=4096, description="Embed requests with more faces are refused with RESOURCE_EXHAUSTED."
    )
    batching: bool = Field(True, description="Merge concurrent requests into shared model calls.")
    tf_intra_op_threads: int = Field(
        0, ge=0, le=256, description="Threads inside one op, TensorFlow's or XNNPACK's (0 = every core)."
    )
    tf_inter_op_threads: int = Field(
        0, ge=0, le=256, description="TensorFlow ops run side by side (0 = TensorFlow's default: all cores)."
    )
    max_batch: int = Field(
        4,
        ge=1,
        le=1024,
        description="Largest model call the batcher builds, in faces. On a CPU int8 FaceNet embeds most "
        "faces per second at 2-4 a call (194/s flip-fused; 142/s at 32, whose activations outgrow the "
        "caches); a GPU wants large calls (the production overlay: 64).",
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="How long the batcher waits for more faces after the first one (0: never; "
        "requests that queue while the model runs still share the next call). A few ms pays on a GPU.",
    )
    redis_url: str = Field(
        DEFAULT_REDIS_URL,
        validation_alias=AliasChoices("FACEGATE_EMBEDDING_REDIS_URL", "REDIS_URL"),
        description="Embedding cache; empty string switches the cache off.",
    )
    cache_ttl_s: int = Field(
        7 * 24 * 3600, ge=1, le=365 * 24 * 3600, description="Cache entry lifetime, seconds (default 7 days)."
    )
    cache_timeout_ms: float = Field(
        50.0, gt=0, le=10_000, description="Socket timeout per Redis call; slower counts as down."
    )
    cache_retry_s: float = Field(
        5.0, ge=0, le=3600, description="After a Redis failure, skip the cache this long before trying again."
    )
    cache_prefix: str = Field("facegate:emb", min_length=1, max_length=64, description="Redis key prefix.")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be empty or a redis://, rediss:// or unix:// URL")
        return value
