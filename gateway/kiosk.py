"""VerifyTraveller's checks: the 1:1 document verification, then the watchlist screening.

The live face is detected and embedded once, by docverify: its answer carries the live template,
which the screening searches with (no second embed). The screening needs that template, so the
two stages run one after the other; the search adds milliseconds.

Fail closed: a stage that does not answer (down, slow, broken, or an unexpected error here) is
reported to :func:`gateway.decision.decide_gate` as unavailable, which makes the decision REFER
with SERVICE_UNAVAILABLE. Only a request the caller got wrong (a missing or unreadable image)
is answered with an error status instead of a decision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from facegate.errors import FacegateError, InvalidArgument, ResourceExhausted
from facegate.v1 import docverify_pb2, gateway_pb2, watchlist_pb2
from gateway.decision import GateDecision, Screening, decide_gate
from gateway.downstream import Downstream, Timings
from gateway.records import check_ids

log = logging.getLogger("facegate.gateway.kiosk")

#: Candidates the screening asks for; a hit needs only one, officers see up to this many.
SCREEN_TOP_K = 5


@dataclass
class GateChecks:
    """Everything VerifyTraveller established, for the decision, the audit record and the kiosk."""

    decision: GateDecision
    verification: docverify_pb2.VerifyResponse | None
    candidates: list[watchlist_pb2.Candidate] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)


def validate(request: gateway_pb2.VerifyTravellerRequest) -> None:
    if not request.document.live.data:
        raise InvalidArgument("document.live: the live capture is required")
    validate_document(request)


def validate_document(request: gateway_pb2.VerifyTravellerRequest) -> None:
    """Everything but the live capture (a stream checks its start before any frame arrives)."""
    if request.document.WhichOneof("portrait") is None:
        raise InvalidArgument("document: set one of portrait_image, dg2 or page_scan")
    check_ids("gate_id", [request.gate_id])
    check_ids("a watchlists entry", request.watchlists)


def run_checks(
    down: Downstream,
    request: gateway_pb2.VerifyTravellerRequest,
    timings: Timings | None = None,
    *,
    screen_far: float | None = None,
) -> GateChecks:
    """Verify, screen and decide (see the module docstring); ``timings`` may hold earlier stages.
    ``screen_far`` picks the screening's calibrated operating point (None: the calibration's default)."""
    validate(request)
    timings = timings if timings is not None else Timings()
    with timings.stage("verify"):
        verification, error = _verify(down, request.document)
    with timings.stage("screen"):
        screening, candidates = _screen(down, verification, list(request.watchlists), screen_far)
    return GateChecks(decide_gate(verification, error, screening), verification, candidates, timings)


def _verify(
    down: Downstream, document: docverify_pb2.VerifyRequest
) -> tuple[docverify_pb2.VerifyResponse | None, str | None]:
    try:
        return down.call("docverify", down.docverify.Verify, document), None
    except (InvalidArgument, ResourceExhausted):
        raise  # the caller's image or field: a precise error, not a decision
    except FacegateError as exc:
        return None, exc.message
    except Exception as exc:  # a bug must not open the gate
        log.error("verification failed unexpectedly", exc_info=exc)
        return None, "internal error in the gateway's verification stage"


def _screen(
    down: Downstream,
    verification: docverify_pb2.VerifyResponse | None,
    watchlists: list[str],
    target_far: float | None,
) -> tuple[Screening, list[watchlist_pb2.Candidate]]:
    if verification is None or not verification.HasField("live_template"):
        return Screening.not_run("no live template to screen (the live face was not embedded)"), []
    request = watchlist_pb2.SearchRequest(
        probes=[verification.live_template], watchlists=watchlists, top_k=SCREEN_TOP_K
    )
    if target_far is not None:
        request.target_far = target_far
    try:
        reply = down.call("watchlist", down.watchlist.Search, request)
    except FacegateError as exc:
        return Screening.unavailable(exc.message), []
    except Exception as exc:
        log.error("screening failed unexpectedly", exc_info=exc)
        return Screening.unavailable("internal error in the gateway's screening stage"), []
    candidates = list(reply.results[0].candidates) if reply.results else []
    return Screening.from_search(reply), candidates


def kiosk_verification(verification: docverify_pb2.VerifyResponse | None) -> docverify_pb2.VerifyResponse:
    """What a kiosk may see of the 1:1 details: the live capture's quality, to guide a retry."""
    out = docverify_pb2.VerifyResponse()
    if verification is not None:
        out.live_quality.CopyFrom(verification.live_quality)
        out.portrait_source = verification.portrait_source
    return out
