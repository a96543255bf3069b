"""Gateway-specific metrics (RPC counts and latencies come from services.runtime.metrics).

Labels carry no ids: no request ids, decision ids, key ids, gate ids or subject ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REPLAY_CACHE_HITS = Counter(
    "facegate_gateway_replay_cache_hits_total",
    "Retried requests answered with the stored decision instead of deciding again.",
)
REPLAY_CACHE_ERRORS = Counter(
    "facegate_gateway_replay_cache_errors_total",
    "Replay-cache Redis calls that failed or timed out (the request went on without the cache).",
)
REPLAY_CACHE_UP = Gauge(
    "facegate_gateway_replay_cache_up",
    "1 while the replay cache's Redis answers, 0 when down, backing off or disabled.",
)
REPLAY_WAIT_TIMEOUTS = Counter(
    "facegate_gateway_replay_wait_timeouts_total",
    "Duplicates that gave up waiting for a concurrent first request still being decided.",
)
AUDIT_RECORDS = Counter(
    "facegate_gateway_audit_records_total",
    "Audit records appended and fsync'ed.",
)
AUDIT_WRITE_ERRORS = Counter(
    "facegate_gateway_audit_write_errors_total",
    "Audit appends that failed (the gateway answers no decision without its record).",
)
