"""Detection metrics. Labels carry modes and check names only: never images, names or ids."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.runtime.metrics import LATENCY_BUCKETS

FACES_PER_IMAGE = Histogram(
    "facegate_detection_faces_per_image",
    "Faces found per image (after confidence, size and landmark filters, before max_faces).",
    buckets=(0, 1, 2, 3, 5, 10, 20, 50, 100),
)
DETECTION_LATENCY = Histogram(
    "facegate_detection_mtcnn_seconds",
    "Time in MTCNN per call, by mode (single image or batch).",
    ["mode"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "facegate_detection_batch_size",
    "Images per DetectBatch call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
QUEUE_EXPIRED = Counter(
    "facegate_detection_queue_expired_total",
    "Calls whose deadline passed while they waited for an MTCNN slot: answered DEADLINE_EXCEEDED "
    "without running (the service is behind its callers; a rising rate means too few detection pods).",
)
BATCH_RETRIES = Counter(
    "facegate_detection_batch_retries_total",
    "Images a batch reported without a face and that were re-run alone.",
)
QUALITY_REJECTS = Counter(
    "facegate_detection_quality_rejects_total",
    "Faces failing a quality check, by check (one face can fail several).",
    ["check"],
)
IMAGES = Counter(
    "facegate_detection_images_total",
    "Images processed, by outcome: face, no_face or error.",
    ["outcome"],
)
DROPPED_IMPLAUSIBLE = Counter(
    "facegate_detection_implausible_total",
    "MTCNN detections dropped because their landmarks no human face can have.",
)
