"""Watchlist metrics. Labels carry list-independent codes only: never names, ids or list contents."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.runtime.metrics import LATENCY_BUCKETS

SEARCH_SECONDS = Histogram(
    "facegate_watchlist_search_seconds",
    "Time of the vector search part of a Search RPC, by where it ran (memory or milvus).",
    ["mode"],
    buckets=LATENCY_BUCKETS,
)
SEARCH_PROBES = Counter("facegate_watchlist_search_probes_total", "Probe templates searched.")
SEARCH_HITS = Counter(
    "facegate_watchlist_search_hits_total", "Candidates returned at or above the threshold."
)
ENROLMENTS = Counter(
    "facegate_watchlist_enrolments_total",
    "EnrollSubject calls that stored a subject or replayed one.",
    ["result"],
)
REMOVALS = Counter("facegate_watchlist_removals_total", "Subjects erased.")
TEMPLATES = Gauge("facegate_watchlist_templates", "Templates held by the in-process index (memory mode).")
INDEX_REBUILD_SECONDS = Gauge(
    "facegate_watchlist_index_rebuild_seconds", "Time the last in-process index rebuild from Milvus took."
)
