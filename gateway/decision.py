"""The e-gate decision for VerifyTraveller: ACCEPT, RETRY or REFER, with every reason that applies.

:func:`decide_gate` is a pure function of docverify's 1:1 answer (or the error that stood in for
it) and the watchlist screening (:class:`Screening`). The rules, in the order they win:

**REFER** ("please see an officer") when anything stands against the traveller that they cannot
fix at the kiosk: NO_MATCH, INCONCLUSIVE, PORTRAIT_NOT_FOUND, PORTRAIT_QUALITY_TOO_LOW, DG2_INVALID,
MRZ_INVALID, DOCUMENT_EXPIRED (from docverify's reasons or its MRZ result), INVALID_INPUT,
WATCHLIST_HIT, MODEL_VERSION_MISMATCH, SERVICE_UNAVAILABLE, and any reason code this module does
not know (fail closed). In particular:

* verification missing → SERVICE_UNAVAILABLE with the error; screening unavailable →
  SERVICE_UNAVAILABLE with its message; screening not run while nothing else stops the gate →
  SERVICE_UNAVAILABLE (skipping a check must never let a traveller through);
* a 1:1 MATCH without a calibrated threshold (target FAR <= 0) → SERVICE_UNAVAILABLE; a completed
  screening without one → SERVICE_UNAVAILABLE (a "clear" against an uncalibrated threshold means
  nothing);
* screening templates of another model version than the 1:1 comparison → MODEL_VERSION_MISMATCH
  (and then the screening is not taken as clear);
* a WANTED or ALERT candidate (or one of unknown kind) with score >= the screening threshold →
  WATCHLIST_HIT, one reason per candidate. ALLOW-list candidates are informational: they are kept
  in :attr:`GateDecision.allow_hits` for officers and stop nothing. A NaN score counts as a hit;
* a verification outcome that none of its reasons explains gets the reason its outcome implies
  (NO_MATCH, else INCONCLUSIVE), so a REFER always says why; a watchlist reason in docverify's
  answer (which screens nothing) becomes INCONCLUSIVE: only the screening speaks about watchlists.

**RETRY** when the only things against the traveller are live-capture problems they can fix:
NO_FACE, MULTIPLE_FACES, QUALITY_TOO_LOW. The kiosk shows one instruction, the first that applies
of: several faces → "Only one person at a time, please"; no face → "Please look at the camera";
then the failed quality checks of the live capture: FACE_IN_FRAME → "Please stand in the centre",
INTER_EYE_DISTANCE → "Please step closer", YAW/PITCH/ROLL → "Please look straight at the camera",
BRIGHTNESS/CONTRAST → "Please step into the light", SHARPNESS → "Please hold still"; anything else
→ "Please look at the camera". One instruction, because a traveller follows one at a time and
fixing the framing often fixes the rest. Beside a capture problem, the 1:1 score reasons (MATCH,
NO_MATCH, INCONCLUSIVE) do not count against the traveller: docverify itself declares a comparison
on an unusable capture unreliable (its outcome is INCONCLUSIVE whatever the score), so a turned
head must lead to a retry, not to an officer. They are still listed. Every other REFER reason
beats a capture problem (no face + expired document → REFER).

**ACCEPT** ("Please proceed") only when every check ran and passed: the verification is present
with outcome MATCH and no reason but MATCH, its MRZ (when given) valid and not expired, its
threshold calibrated; the screening completed against a calibrated threshold with the same model
version and no WANTED/ALERT candidate at or over it. WATCHLIST_CLEAR is then added. Anything that
fits none of the rules above is REFER (fail closed).

:func:`kiosk_view` is what a kiosk may be sent. For REFER it is the outcome and the instruction
only: no reasons and no scores, because the traveller stands in front of the kiosk screen and a
watchlist hit must not be inferable from what it shows (any reason list or score would differ
between "hit" and "document problem"). The full decision goes to the audit trail and to officers.
For RETRY it is the capture reasons and the instruction (what the traveller must fix, no scores);
for ACCEPT everything except watchlist scores and ALLOW-list candidates.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from facegate.thresholds import SizeBand
from facegate.v1 import common_pb2, docverify_pb2, watchlist_pb2

R = common_pb2.ReasonCode
OUT = common_pb2.Outcome
M = docverify_pb2.MatchOutcome
Q = common_pb2.QualityCheck
K = watchlist_pb2.WatchlistKind

#: What the traveller can fix at the kiosk.
RETRY_CODES = frozenset({R.REASON_CODE_NO_FACE, R.REASON_CODE_MULTIPLE_FACES, R.REASON_CODE_QUALITY_TOO_LOW})
#: The 1:1 score verdicts; moot beside a capture problem (see the module docstring).
SCORE_CODES = frozenset({R.REASON_CODE_MATCH, R.REASON_CODE_NO_MATCH, R.REASON_CODE_INCONCLUSIVE})
#: Only the screening may say these; from the verification they are not believed.
SCREENING_CODES = frozenset({R.REASON_CODE_WATCHLIST_HIT, R.REASON_CODE_WATCHLIST_CLEAR})
#: Reasons that never stand against the traveller.
PASS_CODES = frozenset({R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_CLEAR})

ACCEPT_INSTRUCTION = "Please proceed"
REFER_INSTRUCTION = "Please see an officer"
LOOK_AT_CAMERA = "Please look at the camera"
ONE_PERSON = "Only one person at a time, please"
#: Failed live-quality checks, in the order their instruction is preferred.
QUALITY_INSTRUCTIONS: tuple[tuple[frozenset[int], str], ...] = (
    (frozenset({Q.QUALITY_CHECK_FACE_IN_FRAME}), "Please stand in the centre"),
    (frozenset({Q.QUALITY_CHECK_INTER_EYE_DISTANCE}), "Please step closer"),
    (
        frozenset({Q.QUALITY_CHECK_YAW, Q.QUALITY_CHECK_PITCH, Q.QUALITY_CHECK_ROLL}),
        "Please look straight at the camera",
    ),
    (frozenset({Q.QUALITY_CHECK_BRIGHTNESS, Q.QUALITY_CHECK_CONTRAST}), "Please step into the light"),
    (frozenset({Q.QUALITY_CHECK_SHARPNESS}), "Please hold still"),
)

DOCUMENT_SCORE = "document_similarity"
WATCHLIST_SCORE = "watchlist_top1"


class ScreeningStatus(enum.Enum):
    COMPLETED = "completed"  # the search ran; hits (possibly none) are known
    UNAVAILABLE = "unavailable"  # the search was attempted and failed
    NOT_RUN = "not_run"  # not attempted (e.g. no live face to search with)


@dataclass(frozen=True)
class Hit:
    """One screening candidate: ids only, never names."""

    subject_id: str
    watchlist: str
    kind: int  # watchlist_pb2.WatchlistKind
    score: float


@dataclass(frozen=True)
class Screening:
    """What the watchlist screening established (or why it did not)."""

    status: ScreeningStatus
    hits: tuple[Hit, ...] = ()
    threshold: float = math.nan  # NaN: no threshold known
    target_far: float = 0.0  # 0: not calibrated
    model_version: str = ""
    message: str = ""  # why it was unavailable or not run

    @classmethod
    def completed(
        cls, hits: Iterable[Hit], threshold: float, target_far: float, model_version: str
    ) -> Screening:
        return cls(ScreeningStatus.COMPLETED, tuple(hits), threshold, target_far, model_version)

    @classmethod
    def unavailable(cls, message: str) -> Screening:
        return cls(ScreeningStatus.UNAVAILABLE, message=message)

    @classmethod
    def not_run(cls, message: str = "") -> Screening:
        return cls(ScreeningStatus.NOT_RUN, message=message)

    @classmethod
    def from_search(cls, response: watchlist_pb2.SearchResponse, probe: int = 0) -> Screening:
        """The completed screening of probe ``probe`` of a watchlist SearchResponse."""
        candidates = response.results[probe].candidates if probe < len(response.results) else ()
        hits = (Hit(c.subject_id, c.watchlist, c.kind, c.score) for c in candidates)
        return cls.completed(hits, response.threshold, response.target_far, response.model_version)


@dataclass
class GateDecision:
    """The gate's answer with everything needed to audit it (see :func:`kiosk_view` for kiosks)."""

    outcome: int  # common_pb2.Outcome
    reasons: list[common_pb2.Reason] = field(default_factory=list)
    scores: list[common_pb2.Score] = field(default_factory=list)
    instruction: str = REFER_INSTRUCTION
    model_version: str = ""
    allow_hits: list[Hit] = field(default_factory=list)  # ALLOW-list candidates: officers only

    def codes(self) -> set[int]:
        return {r.code for r in self.reasons}

    def to_proto(self, decision: common_pb2.Decision | None = None) -> common_pb2.Decision:
        """Fill outcome, reasons, scores and model version of ``decision`` (id and time are the caller's)."""
        decision = decision if decision is not None else common_pb2.Decision()
        decision.outcome = self.outcome
        del decision.reasons[:]
        decision.reasons.extend(self.reasons)
        del decision.scores[:]
        decision.scores.extend(self.scores)
        decision.model_version = self.model_version
        return decision


def decide_gate(
    verification: docverify_pb2.VerifyResponse | None,
    verification_error: str | None,
    screening: Screening,
) -> GateDecision:
    """Combine the 1:1 verification and the watchlist screening into the gate decision (module docstring)."""
    doc_reasons, doc_passed = _verification_reasons(verification, verification_error)
    stands = {r.code for r in doc_reasons} - PASS_CODES
    screen_reasons, allow_hits, screen_passed = _screening_reasons(verification, screening, stands)
    reasons = doc_reasons + screen_reasons
    outcome = _outcome({r.code for r in reasons}, doc_passed and screen_passed)
    if outcome == OUT.OUTCOME_REFER and not {r.code for r in reasons} - PASS_CODES:
        reasons.append(_reason(R.REASON_CODE_INCONCLUSIVE, "not every check reported a pass"))
    return GateDecision(
        outcome=outcome,
        reasons=reasons,
        scores=_scores(verification, screening),
        instruction=_instruction(outcome, reasons, verification),
        model_version=(verification.model_version if verification else "") or screening.model_version,
        allow_hits=allow_hits,
    )


def kiosk_view(decision: GateDecision) -> GateDecision:
    """What a kiosk may see of ``decision``; see the module docstring for why REFER shows nothing."""
    if decision.outcome == OUT.OUTCOME_ACCEPT:
        return GateDecision(
            outcome=decision.outcome,
            reasons=[_copy(r) for r in decision.reasons if r.code != R.REASON_CODE_WATCHLIST_HIT],
            scores=[_copy(s) for s in decision.scores if not s.name.startswith("watchlist")],
            instruction=decision.instruction,
            model_version=decision.model_version,
        )
    if decision.outcome == OUT.OUTCOME_RETRY:
        return GateDecision(
            outcome=decision.outcome,
            reasons=[_copy(r) for r in decision.reasons if r.code in RETRY_CODES],
            instruction=decision.instruction,
        )
    return GateDecision(outcome=OUT.OUTCOME_REFER, instruction=REFER_INSTRUCTION)


# ---- the two inputs ---------------------------------------------------------------------------


def _verification_reasons(
    verification: docverify_pb2.VerifyResponse | None, error: str | None
) -> tuple[list[common_pb2.Reason], bool]:
    """The 1:1 reasons (docverify's plus what the gateway checks again), and whether it passed."""
    if verification is None:
        return [
            _reason(R.REASON_CODE_SERVICE_UNAVAILABLE, f"document verification: {error or 'no answer'}")
        ], False
    reasons = [_from_docverify(r) for r in verification.reasons]
    if error:
        reasons.append(_reason(R.REASON_CODE_SERVICE_UNAVAILABLE, f"document verification: {error}"))
    codes = {r.code for r in reasons}
    mrz = verification.mrz if verification.HasField("mrz") else None
    if mrz is not None and not mrz.valid and R.REASON_CODE_MRZ_INVALID not in codes:
        reasons.append(_reason(R.REASON_CODE_MRZ_INVALID, "; ".join(mrz.errors)[:500] or "MRZ invalid"))
    if mrz is not None and mrz.expired and R.REASON_CODE_DOCUMENT_EXPIRED not in codes:
        reasons.append(_reason(R.REASON_CODE_DOCUMENT_EXPIRED, f"document expired on {mrz.expiry_date}"))
    reasons.extend(_outcome_checks(verification, {r.code for r in reasons}))
    passed = verification.outcome == M.MATCH_OUTCOME_MATCH and {r.code for r in reasons} == {
        R.REASON_CODE_MATCH
    }
    return reasons, passed


def _from_docverify(reason: common_pb2.Reason) -> common_pb2.Reason:
    """A copy of a docverify reason; a watchlist verdict from it (it screens nothing) is refused."""
    if reason.code in SCREENING_CODES:
        return _reason(R.REASON_CODE_INCONCLUSIVE, f"verification sent {_enum_name(R, reason.code)}")
    return _copy(reason)


def _outcome_checks(verification: docverify_pb2.VerifyResponse, codes: set[int]) -> list[common_pb2.Reason]:
    """Reasons the 1:1 outcome implies but its reasons do not state (fail closed on odd answers)."""
    outcome = verification.outcome
    if outcome == M.MATCH_OUTCOME_MATCH:
        found = []
        if R.REASON_CODE_MATCH not in codes:
            found.append(
                _reason(R.REASON_CODE_INCONCLUSIVE, "verification said MATCH without a score reason")
            )
        if not verification.target_far > 0 or not math.isfinite(verification.threshold):
            found.append(_reason(R.REASON_CODE_SERVICE_UNAVAILABLE, "the 1:1 threshold is not calibrated"))
        return found
    if codes - PASS_CODES:
        return []  # the reasons already say why it is not a MATCH
    if outcome == M.MATCH_OUTCOME_NO_MATCH:
        return [_reason(R.REASON_CODE_NO_MATCH, "verification outcome NO_MATCH")]
    return [_reason(R.REASON_CODE_INCONCLUSIVE, f"verification outcome {_enum_name(M, outcome)}")]


def _screening_reasons(
    verification: docverify_pb2.VerifyResponse | None, screening: Screening, stands: set[int]
) -> tuple[list[common_pb2.Reason], list[Hit], bool]:
    """Screening reasons, the ALLOW-list candidates, and whether the screening came out clear.

    ``stands`` is what the verification already holds against the traveller: a screening that was
    not run is only a reason of its own when nothing else stops the gate.
    """
    if screening.status is ScreeningStatus.UNAVAILABLE:
        message = f"watchlist screening unavailable: {screening.message or 'no answer'}"
        return [_reason(R.REASON_CODE_SERVICE_UNAVAILABLE, message)], [], False
    if screening.status is not ScreeningStatus.COMPLETED:
        if stands:
            return [], [], False
        message = f"watchlist screening did not run{': ' + screening.message if screening.message else ''}"
        return [_reason(R.REASON_CODE_SERVICE_UNAVAILABLE, message)], [], False
    reasons = _screening_checks(verification, screening)
    hits, allow_hits = _split_hits(screening)
    reasons.extend(_reason(R.REASON_CODE_WATCHLIST_HIT, _hit_message(h, screening.threshold)) for h in hits)
    if reasons:
        return reasons, allow_hits, False
    clear = f"no WANTED or ALERT candidate at or over threshold {screening.threshold:.4f}"
    return [_reason(R.REASON_CODE_WATCHLIST_CLEAR, clear)], allow_hits, True


def _screening_checks(
    verification: docverify_pb2.VerifyResponse | None, screening: Screening
) -> list[common_pb2.Reason]:
    """A completed screening is only meaningful with a calibrated threshold and the 1:1's model."""
    found = []
    if not screening.target_far > 0 or not math.isfinite(screening.threshold):
        found.append(_reason(R.REASON_CODE_SERVICE_UNAVAILABLE, "the watchlist threshold is not calibrated"))
    doc_version = verification.model_version if verification is not None else ""
    if verification is not None and verification.outcome == M.MATCH_OUTCOME_MATCH and not doc_version:
        found.append(_reason(R.REASON_CODE_MODEL_VERSION_MISMATCH, "verification reported no model version"))
    elif doc_version and screening.model_version != doc_version:
        message = (
            f"watchlist templates of model {screening.model_version[:12] or '(none)'}, "
            f"verification of model {doc_version[:12]}"
        )
        found.append(_reason(R.REASON_CODE_MODEL_VERSION_MISMATCH, message))
    return found


def _split_hits(screening: Screening) -> tuple[list[Hit], list[Hit]]:
    """(candidates that refer, ALLOW-list candidates) at or over the threshold."""
    at_or_over = [h for h in screening.hits if not h.score < screening.threshold]  # NaN counts as a hit
    refer = [h for h in at_or_over if h.kind != K.WATCHLIST_KIND_ALLOW]  # unknown kinds refer too
    allow = [h for h in at_or_over if h.kind == K.WATCHLIST_KIND_ALLOW]
    return refer, allow


def _hit_message(hit: Hit, threshold: float) -> str:
    kind = _enum_name(K, hit.kind).removeprefix("WATCHLIST_KIND_")
    return (
        f"subject {hit.subject_id} on {kind} list {hit.watchlist}: score {hit.score:.4f} >= {threshold:.4f}"
    )


# ---- outcome, instruction, scores -------------------------------------------------------------


def _outcome(codes: set[int], every_check_passed: bool) -> int:
    """REFER beats RETRY beats ACCEPT; ACCEPT needs every check to have passed (fail closed)."""
    against = codes - PASS_CODES
    capture = against & RETRY_CODES
    refer = against - RETRY_CODES - (SCORE_CODES if capture else frozenset())
    if refer:
        return OUT.OUTCOME_REFER
    if capture:
        return OUT.OUTCOME_RETRY
    return OUT.OUTCOME_ACCEPT if every_check_passed else OUT.OUTCOME_REFER


def _instruction(
    outcome: int, reasons: list[common_pb2.Reason], verification: docverify_pb2.VerifyResponse | None
) -> str:
    if outcome == OUT.OUTCOME_ACCEPT:
        return ACCEPT_INSTRUCTION
    if outcome != OUT.OUTCOME_RETRY:
        return REFER_INSTRUCTION
    codes = {r.code for r in reasons}
    if verification is None and R.REASON_CODE_MULTIPLE_FACES not in codes:
        return LOOK_AT_CAMERA
    return capture_instruction(codes, verification.live_quality.failed if verification else ())


def capture_instruction(codes: Iterable[int], failed: Iterable[int]) -> str:
    """The one instruction for a capture with reason ``codes`` and failed quality ``failed`` checks
    (module docstring); also what a streaming kiosk is told about each frame (gateway.frame_quality)."""
    codes = set(codes)
    if R.REASON_CODE_MULTIPLE_FACES in codes:
        return ONE_PERSON
    if R.REASON_CODE_NO_FACE in codes:
        return LOOK_AT_CAMERA
    failed = set(failed)
    return next((text for checks, text in QUALITY_INSTRUCTIONS if failed & checks), LOOK_AT_CAMERA)


def _scores(
    verification: docverify_pb2.VerifyResponse | None, screening: Screening
) -> list[common_pb2.Score]:
    """The 1:1 score when one was computed; the screening's top candidate when it completed."""
    scores = []
    if verification is not None and {r.code for r in verification.reasons} & SCORE_CODES:
        scores.append(
            common_pb2.Score(
                name=DOCUMENT_SCORE,
                value=verification.similarity,
                threshold=verification.threshold,
                target_far=verification.target_far,
                **_calibration(verification),
            )
        )
    if screening.status is ScreeningStatus.COMPLETED:
        top = max((h.score for h in screening.hits), default=0.0)  # 0: no candidate was returned
        scores.append(
            common_pb2.Score(
                name=WATCHLIST_SCORE,
                value=top,
                threshold=screening.threshold,
                target_far=screening.target_far,
            )
        )
    return scores


# ---- small helpers ----------------------------------------------------------------------------


def _calibration(verification: docverify_pb2.VerifyResponse) -> dict:
    """Which portrait source and size band set the 1:1 threshold, and the FAR it gave there."""
    if not verification.HasField("threshold_origin"):
        return {}
    o = verification.threshold_origin
    band = SizeBand(o.min_inter_eye_px, o.max_inter_eye_px or None, points=())
    return {"calibration": f"{o.source}, {band.label()}", "measured_far": o.measured_far}


def _reason(code: int, message: str) -> common_pb2.Reason:
    return common_pb2.Reason(code=code, message=message)


_Message = TypeVar("_Message", common_pb2.Reason, common_pb2.Score)


def _copy(message: _Message) -> _Message:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def _enum_name(enum_type: object, value: int) -> str:
    """The enum value's name, or the number for a value this build does not know."""
    try:
        return enum_type.Name(value)  # type: ignore[attr-defined]
    except ValueError:
        return str(value)
