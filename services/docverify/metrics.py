"""Docverify's own metrics (RPC counts and latencies come from the runtime interceptor).

Labels carry outcomes, reason codes and portrait sources only: never names, numbers or images.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.runtime.metrics import LATENCY_BUCKETS

DECISIONS = Counter(
    "facegate_docverify_decisions_total",
    "1:1 decisions, by outcome and portrait source.",
    ["outcome", "source"],
)
REASONS = Counter(
    "facegate_docverify_reasons_total",
    "Reasons attached to decisions, by reason code.",
    ["reason"],
)
SIMILARITY = Histogram(
    "facegate_docverify_similarity",
    "Cosine similarity of live face and document portrait (for drift monitoring).",
    buckets=(-0.2, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
STAGE_SECONDS = Histogram(
    "facegate_docverify_stage_seconds",
    "Time per verification stage: mrz, dg2, detect (both images, overlapped), embed.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
MRZ_RESULTS = Counter(
    "facegate_docverify_mrz_total",
    "MRZs checked, by format and validity.",
    ["format", "valid"],
)
LIVE_FULL_SEARCHES = Counter(
    "facegate_docverify_live_full_searches_total",
    "Live captures searched again at full size because the kiosk profile found no large face.",
)
PORTRAIT_FULL_SEARCHES = Counter(
    "facegate_docverify_portrait_full_searches_total",
    "DG2 portraits searched again in full: the document profile found no large face (why=no_face) "
    "or its face failed a portrait check (why=quality).",
    ["why"],
)
