"""The gateway's auth-failure counter, defined once (``gateway/metrics.py`` holds the others).

Labels carry the refusal reason only: never a key, a key id or a method argument, so the metric
can be shown on any dashboard without leaking who or what was refused.
"""

from __future__ import annotations

from prometheus_client import Counter

#: Every value the ``reason`` label takes.
REASONS: tuple[str, ...] = ("missing_key", "unknown_key", "revoked_key", "wrong_role")

AUTH_FAILURES = Counter(
    "facegate_gateway_auth_failures_total",
    "Gateway calls refused before any handler ran, by reason "
    "(missing_key: no or malformed 'authorization: Bearer' header; unknown_key; revoked_key; "
    "wrong_role: a valid key whose role may not call the method).",
    ["reason"],
)
for _reason in REASONS:  # export every series at 0 so rate() and alerts work from the start
    AUTH_FAILURES.labels(_reason)
