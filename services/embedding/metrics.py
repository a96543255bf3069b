"""Embedding-service metrics. Labels carry outcomes and device names only, never image data."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DEVICE = Gauge(
    "facegate_embedding_device_info",
    "1 for the device the embedding model runs on (label device, e.g. /CPU:0 or /GPU:0).",
    ["device"],
)
FLIP_FUSION = Gauge("facegate_embedding_flip_fusion", "1 when mirrored crops are fused into embeddings.")
FACES = Counter("facegate_embedding_faces_total", "Faces embedded (model or cache).", ["source"])
BATCH_SIZE = Histogram(
    "facegate_embedding_batch_size",
    "Faces per model call (after dynamic batching).",
    buckets=(1, 2, 4, 8, 16, 24, 32, 48, 64, 128),
)
MODEL_SECONDS = Histogram(
    "facegate_embedding_model_seconds",
    "Time of one compiled model call.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
QUEUE_WAIT = Histogram(
    "facegate_embedding_queue_wait_seconds",
    "Time a request waited in the batcher before its model call started.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
CACHE = Counter(
    "facegate_embedding_cache_total",
    "Embedding cache lookups by result: hit, miss, error (Redis down or slow), skipped (backing off).",
    ["result"],
)
CACHE_UP = Gauge("facegate_embedding_cache_up", "1 while the Redis cache answers, 0 when down or disabled.")
