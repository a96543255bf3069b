"""Watchlist service settings (environment prefix FACEGATE_WATCHLIST_, plus MILVUS_URI / MILVUS_TOKEN).

The Milvus location keeps the un-prefixed names every Milvus tool uses, so one variable points the
service at Milvus Lite (a local ``*.db`` path) or at a server/cluster (``http://host:19530``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from facegate.endpoints import DEFAULT_PORTS
from services.runtime.config import MetricsPort, Port, ServiceSettings
from services.runtime.model_spec import DEFAULT as MODEL

REPO = Path(__file__).resolve().parents[2]
DEFAULT_LITE_PATH = REPO / "var" / "milvus" / "watchlist.db"

#: Index types this service knows how to tune (Lite builds all of them; a server builds all).
IndexType = Literal["FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "AUTOINDEX"]


class WatchlistSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_WATCHLIST_", extra="ignore", frozen=True)

    port: Port = DEFAULT_PORTS["watchlist"][0]
    metrics_port: MetricsPort = DEFAULT_PORTS["watchlist"][1]

    milvus_uri: str = Field(
        str(DEFAULT_LITE_PATH),
        min_length=1,
        validation_alias=AliasChoices("MILVUS_URI", "FACEGATE_WATCHLIST_MILVUS_URI"),
        description="Milvus Lite data file (*.db) or a server URI http(s)://host:port.",
    )
    milvus_token: SecretStr = Field(
        SecretStr(""),
        validation_alias=AliasChoices("MILVUS_TOKEN", "FACEGATE_WATCHLIST_MILVUS_TOKEN"),
        description="Milvus token ('user:password' or an API key); empty for Lite and open servers.",
    )
    milvus_db: str = Field("", pattern=r"^[A-Za-z0-9_]{0,64}$", description="Milvus database ('' = default).")
    collection_prefix: str = Field(
        "facegate_wl",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,40}$",
        description="Prefix of the three Milvus collections (lists, subjects, templates).",
    )
    lite_page_rows: int = Field(
        100_000,
        ge=1,
        le=1_000_000,
        description="Milvus Lite: most rows in one reply when reading every template at start-up "
        "(its server refuses replies over 256 MB; 100k templates are ~60 MB).",
    )
    milvus_timeout_s: float = Field(10.0, gt=0, le=300, description="Timeout of each Milvus call, seconds.")

    search_mode: Literal["auto", "memory", "milvus"] = Field(
        "auto",
        description="memory: in-process index kept in sync with Milvus (exact scores); milvus: search in Milvus; "
        "auto: memory for Lite (the only owner of its data) and for a server with a change feed, else milvus.",
    )
    change_feed_url: str = Field(
        "",
        description="Redis URL of the change feed that keeps several replicas' in-process indexes in step "
        "on one Milvus server (every acknowledged write is published; every RPC first applies the other "
        "replicas' writes); empty: none, so memory mode on a server must have a single replica.",
    )
    change_feed_timeout_s: float = Field(
        0.5, gt=0, le=30, description="Timeout of each change-feed (Redis) call, seconds."
    )
    change_feed_max_len: int = Field(
        100_000,
        ge=1000,
        le=10_000_000,
        description="Changes the feed keeps; a replica that falls further behind reloads from Milvus.",
    )
    sketch_min_templates: int = Field(
        200_000,
        ge=1,
        description="memory mode: lists with at least this many templates are searched through the "
        "sign sketch (Hamming prefilter, then exact float32 scores); smaller lists by an exact scan.",
    )
    sketch_bits: int = Field(
        2048,
        ge=64,
        le=4096,
        multiple_of=64,
        description="memory mode: sign bits per template in the sketch (2048 = 256 bytes per template), in "
        "stages of 512: the first is scanned for every row, each next one only for the rows still in.",
    )
    sketch_miss_probability: float = Field(
        1e-6,
        gt=0,
        le=1e-2,
        description="memory mode: largest chance that the sketch misses a template scoring exactly at "
        "the threshold (less above it); sets the Hamming radius.",
    )
    sketch_max_candidates: int = Field(
        65_536,
        ge=1,
        description="memory mode: when a threshold admits more sketch candidates than this (a very low "
        "threshold), the probe is searched by the exact scan instead.",
    )
    search_consistency: Literal["Session", "Bounded", "Strong"] = Field(
        "Session", description="Milvus consistency level of searches and reads."
    )
    index_type: IndexType = Field(
        "HNSW", description="Milvus index on the templates; applies when the collection is created."
    )
    index_params: dict[str, int] = Field(
        default_factory=lambda: {"M": 16, "efConstruction": 200},
        description="JSON build parameters of that index.",
    )
    search_params: dict[str, int] = Field(
        default_factory=lambda: {"ef": 1000},
        description="JSON search parameters (ef is raised to the hit limit when smaller). HNSW at ef 64 "
        "missed 18% of planted gate matches at 100k; ef 1000 none (bench/results/watchlist.md).",
    )

    model_version: str = Field(
        MODEL.model_version,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="Model version of new lists when the request names none (default: the embedding "
        "runtime auto's on a CPU, FaceNet int8; a GPU embedding serves float32 FaceNet, the weights' SHA-256).",
    )
    dimension: int = Field(
        MODEL.dimension, ge=2, le=4096, description="Embedding dimension of the templates collection."
    )
    max_watchlists: int = Field(
        4000,
        ge=1,
        le=4095,
        description="Most watchlists one deployment holds; one more is refused (RESOURCE_EXHAUSTED). Each "
        "list is a partition of the templates collection, and Milvus holds at most 4,096 partitions in "
        "one (rootCoord.maxPartitionNum, _default included): past it the store's own error would be opaque.",
    )
    calibration_dir: Path | None = Field(
        None,
        description="Folder of calibrated threshold files; unset: the shipped facegate/calibration.",
    )

    default_top_k: int = Field(10, ge=1, le=100, description="top_k of a Search request that gives 0.")
    max_probes: int = Field(32, ge=1, le=1024, description="Most probes in one Search request.")
    max_templates_per_request: int = Field(
        16, ge=1, le=1000, description="Most templates in one Enroll or AddTemplates request."
    )
    max_templates_per_subject: int = Field(
        20, ge=1, le=100, description="Most templates one subject may hold."
    )
    default_page_size: int = Field(
        50, ge=1, le=10_000, description="ListSubjects page size when a request gives 0."
    )
    max_page_size: int = Field(500, ge=1, le=10_000, description="Largest ListSubjects page.")

    @field_validator("index_params", "search_params", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value)
        return value

    @model_validator(mode="after")
    def _coherent(self) -> WatchlistSettings:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must not exceed max_page_size")
        return self

    @property
    def is_lite(self) -> bool:
        return not self.milvus_uri.startswith(("http://", "https://", "tcp://", "unix:"))

    @property
    def effective_search_mode(self) -> Literal["memory", "milvus"]:
        if self.search_mode == "auto":
            return "memory" if self.is_lite or self.change_feed_url else "milvus"
        return self.search_mode
