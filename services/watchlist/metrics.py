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
FEED_APPLIED = Counter(
    "facegate_watchlist_feed_applied_total",
    "Other replicas' changes applied from the change feed, by kind of change.",
    ["kind"],
)
FEED_RELOADS = Counter(
    "facegate_watchlist_feed_reloads_total",
    "Full reloads of the in-process index from Milvus forced by the change feed (epoch, gap, apply).",
    ["reason"],
)
FEED_ERRORS = Counter(
    "facegate_watchlist_feed_errors_total", "Change-feed calls that failed, by operation.", ["operation"]
)
FEED_UNSENT = Gauge(
    "facegate_watchlist_feed_unsent", "This replica's acknowledged changes the change feed has not taken yet."
)
