"""The 1:1 decision rule: every reason that applies, and an outcome that can only be MATCH when
nothing at all stands against it.

Three groups of reasons, because they weigh differently:

* **comparison blockers** - the two faces could not be compared reliably (no live face, several
  faces, quality too low, portrait missing or too poor, DG2 invalid, a service or the calibration
  unavailable). The outcome is INCONCLUSIVE whatever the score says: a "no match" from a blurred
  capture is as unreliable as a "match".
* **document reasons** - MRZ invalid, document expired. They say nothing about the faces, so a
  clear NO_MATCH stays NO_MATCH, but a face MATCH becomes INCONCLUSIVE: the gate must not open for
  a bad or expired document.
* **the score** - similarity >= threshold is MATCH; within ``grey_zone`` below the threshold is
  INCONCLUSIVE; below that NO_MATCH. MATCH needs a calibrated threshold for the exact model
  version that produced the templates (fail closed otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from facegate.v1 import common_pb2, docverify_pb2

R = common_pb2.ReasonCode
M = docverify_pb2.MatchOutcome

COMPARISON_BLOCKERS = frozenset(
    {
        R.REASON_CODE_NO_FACE,
        R.REASON_CODE_MULTIPLE_FACES,
        R.REASON_CODE_QUALITY_TOO_LOW,
        R.REASON_CODE_PORTRAIT_NOT_FOUND,
        R.REASON_CODE_PORTRAIT_QUALITY_TOO_LOW,
        R.REASON_CODE_DG2_INVALID,
        R.REASON_CODE_SERVICE_UNAVAILABLE,
        R.REASON_CODE_MODEL_VERSION_MISMATCH,
        R.REASON_CODE_INVALID_INPUT,
    }
)
DOCUMENT_REASONS = frozenset({R.REASON_CODE_MRZ_INVALID, R.REASON_CODE_DOCUMENT_EXPIRED})


@dataclass
class Findings:
    """What the pipeline established; ``decide`` turns it into an outcome."""

    reasons: list[common_pb2.Reason] = field(default_factory=list)
    similarity: float | None = None
    threshold: float | None = None  # None: no calibrated threshold (never MATCH)
    target_far: float = 0.0

    def add(self, code: int, message: str) -> None:
        self.reasons.append(common_pb2.Reason(code=code, message=message))

    def codes(self) -> set[int]:
        return {r.code for r in self.reasons}


def decide(findings: Findings, grey_zone: float) -> int:
    """The MatchOutcome; also appends the score reason (MATCH / NO_MATCH / INCONCLUSIVE)."""
    codes = findings.codes()
    score_outcome = None
    if findings.similarity is not None and findings.threshold is not None:
        s, t = findings.similarity, findings.threshold
        if s >= t:
            score_outcome = M.MATCH_OUTCOME_MATCH
            findings.add(R.REASON_CODE_MATCH, f"similarity {s:.4f} >= threshold {t:.4f}")
        elif s >= t - grey_zone:
            score_outcome = M.MATCH_OUTCOME_INCONCLUSIVE
            findings.add(
                R.REASON_CODE_INCONCLUSIVE,
                f"similarity {s:.4f} is within {grey_zone:g} below threshold {t:.4f}",
            )
        else:
            score_outcome = M.MATCH_OUTCOME_NO_MATCH
            findings.add(R.REASON_CODE_NO_MATCH, f"similarity {s:.4f} < threshold {t:.4f}")
    if score_outcome is None or codes & COMPARISON_BLOCKERS:
        return M.MATCH_OUTCOME_INCONCLUSIVE
    if score_outcome == M.MATCH_OUTCOME_MATCH and codes & DOCUMENT_REASONS:
        return M.MATCH_OUTCOME_INCONCLUSIVE
    return score_outcome
