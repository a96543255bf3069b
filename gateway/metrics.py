"""Gateway-specific metrics (RPC counts and latencies come from services.runtime.metrics).

Labels carry no ids: no request ids, decision ids, key ids, gate ids or subject ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.runtime.metrics import LATENCY_BUCKETS

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
PEER_UNANSWERED = Counter(
    "facegate_gateway_peer_unanswered_total",
    "Calls to another gateway replica (referral queue, forwarded officer actions) that it did not "
    "answer: unreachable, timed out, or skipped while it is held as stuck. Officers' queues are "
    "incomplete meanwhile.",
)
AUDIT_WRITE_ERRORS = Counter(
    "facegate_gateway_audit_write_errors_total",
    "Audit appends that failed (the gateway answers no decision without its record).",
)

# ---- decisions and orchestration ---------------------------------------------------------------

DECISIONS = Counter(
    "facegate_gateway_decisions_total",
    "Decisions answered, by operation (VerifyTraveller, Identify, Compare) and outcome.",
    ["operation", "outcome"],
)
DECISION_REASONS = Counter(
    "facegate_gateway_decision_reasons_total",
    "Reasons given in decisions, by operation and reason code (a decision can give several).",
    ["operation", "reason"],
)
STAGE_SECONDS = Histogram(
    "facegate_gateway_stage_seconds",
    "Wall time of one stage of a gateway call (verify, screen, embed, search, audit, ...).",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
DOWNSTREAM_ERRORS = Counter(
    "facegate_gateway_downstream_errors_total",
    "Downstream calls that failed, by service and gRPC code (input refusals included).",
    ["service", "code"],
)
WATCHLIST_HITS = Counter(
    "facegate_gateway_watchlist_hits_total",
    "Watchlist candidates at or above threshold (WANTED/ALERT) found at a gate or by an officer.",
    ["operation"],
)
IN_FLIGHT = Gauge("facegate_gateway_in_flight", "Gateway calls being worked on right now.")
SATURATED = Counter(
    "facegate_gateway_saturated_total",
    "Calls refused with RESOURCE_EXHAUSTED because FACEGATE_GATEWAY_MAX_IN_FLIGHT calls were in progress.",
)

# ---- the camera stream (gateway.stream) ------------------------------------------------------

STREAM_FRAMES = Counter(
    "facegate_gateway_stream_frames_total",
    "VerifyTravellerStream frames by fate: scored, or skipped (a newer frame arrived before it was scored).",
    ["fate"],
)
STREAM_STOPS = Counter(
    "facegate_gateway_stream_stops_total",
    "VerifyTravellerStream captures ended, by why: good_frame, frame_cap, time_budget, stream_end, "
    "scoring_failed, client_gone.",
    ["stop"],
)
STREAM_DECISION_SECONDS = Histogram(
    "facegate_gateway_stream_decision_seconds",
    "VerifyTravellerStream: time from the first frame's arrival to the decision being sent.",
    buckets=LATENCY_BUCKETS,
)
