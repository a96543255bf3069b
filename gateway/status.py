"""GetSystemStatus: the ops overview, as the gateway sees the system.

Health is what the gateway's own downstream calls would meet (each service's grpc.health.v1 at
the target the gateway uses), so an ops view shows why decisions fail closed. Decision counts are
the gateway's ``facegate_gateway_decisions_total`` counters since it started, read in-process:
ops get rates by sampling twice, with no second way of counting.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from google.protobuf.timestamp_pb2 import Timestamp

from facegate.client import health_check
from facegate.endpoints import SERVICE_NAMES
from facegate.errors import FacegateError
from facegate.v1 import gateway_pb2, watchlist_pb2
from gateway import metrics
from gateway.config import GatewaySettings
from gateway.downstream import Downstream

HEALTH_TIMEOUT_S = 2.0


def targets(settings: GatewaySettings) -> dict[str, str]:
    return {
        "detection": settings.detection_target,
        "embedding": settings.embedding_target,
        "watchlist": settings.watchlist_target,
        "docverify": settings.docverify_target,
    }


def decision_counts() -> list[gateway_pb2.DecisionCount]:
    """The decisions counter's samples, by operation and outcome."""
    out = []
    for family in metrics.DECISIONS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out.append(
                    gateway_pb2.DecisionCount(
                        operation=sample.labels["operation"],
                        outcome=sample.labels["outcome"],
                        count=int(sample.value),
                    )
                )
    return sorted(out, key=lambda c: (c.operation, c.outcome))


def system_status(
    settings: GatewaySettings,
    down: Downstream,
    pool: ThreadPoolExecutor,
    started_at: Timestamp,
    own_target: str,
) -> gateway_pb2.SystemStatus:
    """Health of every service (checked side by side), model version, watchlists and decision counts."""
    where = targets(settings)
    checks = {
        name: pool.submit(health_check, t, SERVICE_NAMES[name], HEALTH_TIMEOUT_S) for name, t in where.items()
    }
    status = gateway_pb2.SystemStatus(decisions=decision_counts(), started_at=started_at)
    status.services.add(name="gateway", target=own_target, health="SERVING")  # it is answering
    for name, future in checks.items():
        status.services.add(name=name, target=where[name], health=future.result())
    try:
        status.model_version = down.pipeline.model_spec().model_version
    except FacegateError:
        status.model_version = ""
    try:
        reply = down.call("watchlist", down.watchlist.ListWatchlists, watchlist_pb2.ListWatchlistsRequest())
        status.watchlists.extend(reply.watchlists)
    except FacegateError:
        pass  # the watchlist service's health above says why the sizes are missing
    return status
