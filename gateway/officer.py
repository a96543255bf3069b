"""The officer's tools: Identify (1:N) and Compare (1:1), through the same face pipeline as the gate.

Both answer with a Decision that carries its reasons, scores, thresholds and model version, and
both are audited like a gate decision (EU AI Act art. 12(3): every use of remote biometric
identification is logged). A photo without a usable face is an error the officer can act on
(INVALID_ARGUMENT naming the photo), not a decision; a service that does not answer is
UNAVAILABLE; a Compare without a calibrated threshold is INCONCLUSIVE, never a match.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegate.context import submit
from facegate.errors import FacegateError, FailedPrecondition, InvalidArgument
from facegate.pipeline import SUBJECT, Template
from facegate.thresholds import load_thresholds
from facegate.v1 import common_pb2, detection_pb2, docverify_pb2, gateway_pb2, watchlist_pb2
from gateway.downstream import Downstream, Timings
from gateway.records import check_ids

R = common_pb2.ReasonCode
OUT = common_pb2.Outcome
M = docverify_pb2.MatchOutcome


@dataclass
class OfficerAnswer:
    """A decision (not yet stamped) with what the response and the audit record need."""

    decision: common_pb2.Decision
    timings: Timings
    candidates: list[watchlist_pb2.Candidate] = field(default_factory=list)


def _template(down: Downstream, image: common_pb2.Image, what: str) -> Template:
    try:
        return down.pipeline.template(image, SUBJECT, what)
    except FacegateError as exc:
        down.count_failure(exc)
        raise


def identify(
    down: Downstream, request: gateway_pb2.IdentifyRequest
) -> tuple[OfficerAnswer, gateway_pb2.IdentifyResponse]:
    if not request.image.data:
        raise InvalidArgument("image is required")
    check_ids("a watchlists entry", request.watchlists)
    timings = Timings()
    with timings.stage("embed"):
        probe = _template(down, request.image, "image")
    search = watchlist_pb2.SearchRequest(
        probes=[probe.to_proto()], watchlists=list(request.watchlists), top_k=request.top_k
    )
    if request.HasField("threshold"):
        search.threshold = request.threshold
    with timings.stage("search"):
        reply = down.call("watchlist", down.watchlist.Search, search)
    candidates = list(reply.results[0].candidates) if reply.results else []
    decision = common_pb2.Decision(model_version=probe.model_version)
    decision.scores.add(
        name="watchlist_top1",
        value=candidates[0].score if candidates else 0.0,
        threshold=reply.threshold,
        target_far=reply.target_far,
    )
    if candidates:
        decision.outcome = OUT.OUTCOME_REFER
        for c in candidates:
            decision.reasons.add(
                code=R.REASON_CODE_WATCHLIST_HIT,
                message=f"subject {c.subject_id} on {c.watchlist} scored {c.score:.4f} >= {reply.threshold:.4f}",
            )
    else:
        decision.outcome = OUT.OUTCOME_ACCEPT
        decision.reasons.add(
            code=R.REASON_CODE_WATCHLIST_CLEAR, message=f"no candidate at or above {reply.threshold:.4f}"
        )
    face = _without_crop(probe.face)
    response = gateway_pb2.IdentifyResponse(
        face=face, result=watchlist_pb2.SearchResult(candidates=candidates)
    )
    return OfficerAnswer(decision, timings, candidates), response


def _without_crop(face: detection_pb2.DetectedFace) -> detection_pb2.DetectedFace:
    out = detection_pb2.DetectedFace()
    out.CopyFrom(face)
    out.ClearField("aligned")  # the probe's pixels stay in the gateway
    return out


def compare(
    down: Downstream, request: gateway_pb2.CompareRequest, calibration_dir: Path, pool: ThreadPoolExecutor
) -> tuple[OfficerAnswer, gateway_pb2.CompareResponse]:
    if not request.first.data or not request.second.data:
        raise InvalidArgument("first and second images are required")
    timings = Timings()
    with timings.stage("embed"):
        first = submit(pool, _template, down, request.first, "first image")
        second = submit(pool, _template, down, request.second, "second image")
        a, b = first.result(), second.result()
    similarity = float(np.dot(a.vector.astype(np.float64), b.vector.astype(np.float64)))
    decision = common_pb2.Decision(model_version=a.model_version)
    response = gateway_pb2.CompareResponse(similarity=similarity)
    try:
        thresholds = load_thresholds(a.model_version, calibration_dir)
    except FailedPrecondition as exc:
        decision.outcome = OUT.OUTCOME_REFER
        decision.reasons.add(code=R.REASON_CODE_SERVICE_UNAVAILABLE, message=exc.message)
        decision.scores.add(name="similarity", value=similarity)
        response.outcome = M.MATCH_OUTCOME_INCONCLUSIVE
        return OfficerAnswer(decision, timings), response
    point = thresholds.at_far(request.target_far if request.HasField("target_far") else None)
    decision.scores.add(name="similarity", value=similarity, threshold=point.threshold, target_far=point.far)
    response.threshold = point.threshold
    if similarity >= point.threshold:
        decision.outcome, response.outcome = OUT.OUTCOME_ACCEPT, M.MATCH_OUTCOME_MATCH
        decision.reasons.add(
            code=R.REASON_CODE_MATCH,
            message=f"similarity {similarity:.4f} >= threshold {point.threshold:.4f}",
        )
    else:
        decision.outcome, response.outcome = OUT.OUTCOME_REFER, M.MATCH_OUTCOME_NO_MATCH
        decision.reasons.add(
            code=R.REASON_CODE_NO_MATCH,
            message=f"similarity {similarity:.4f} < threshold {point.threshold:.4f}",
        )
    return OfficerAnswer(decision, timings), response
