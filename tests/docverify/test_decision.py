"""The fail-closed 1:1 decision rule (services/docverify/decision.py), table-driven.

Every subset of the comparison-blocker and document reasons is crossed with every score state. The
expected outcome comes from the table below, written out case by case rather than computed the way
``decide`` computes it: MATCH only when the score says MATCH and no reason at all stands against it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from facegate.v1 import common_pb2, docverify_pb2
from services.docverify.decision import COMPARISON_BLOCKERS, DOCUMENT_REASONS, Findings, decide

R = common_pb2.ReasonCode
M = docverify_pb2.MatchOutcome
MATCH, NO_MATCH, INCONCLUSIVE = M.MATCH_OUTCOME_MATCH, M.MATCH_OUTCOME_NO_MATCH, M.MATCH_OUTCOME_INCONCLUSIVE

#: The reasons the rule weighs, written out so that a change to either set shows up here.
BLOCKERS = (
    R.REASON_CODE_NO_FACE,
    R.REASON_CODE_MULTIPLE_FACES,
    R.REASON_CODE_QUALITY_TOO_LOW,
    R.REASON_CODE_PORTRAIT_NOT_FOUND,
    R.REASON_CODE_PORTRAIT_QUALITY_TOO_LOW,
    R.REASON_CODE_DG2_INVALID,
    R.REASON_CODE_SERVICE_UNAVAILABLE,
    R.REASON_CODE_MODEL_VERSION_MISMATCH,
    R.REASON_CODE_INVALID_INPUT,
)
DOCUMENT = (R.REASON_CODE_MRZ_INVALID, R.REASON_CODE_DOCUMENT_EXPIRED)
#: Reasons ``decide`` itself appends for the score.
SCORE_REASONS = (R.REASON_CODE_MATCH, R.REASON_CODE_NO_MATCH, R.REASON_CODE_INCONCLUSIVE)
#: Codes that belong to other decisions (watchlist screening) or to none; docverify never adds them.
NOT_1_TO_1 = (R.REASON_CODE_UNSPECIFIED, R.REASON_CODE_WATCHLIST_HIT, R.REASON_CODE_WATCHLIST_CLEAR)
WEIGHED = BLOCKERS + DOCUMENT

THRESHOLD = 0.5
GREY_ZONE = 0.25  # exact in binary, so the grey-zone floor below is exactly threshold - grey zone


@dataclass(frozen=True)
class Score:
    """One state of the similarity and threshold, and what the score alone says."""

    name: str
    similarity: float | None
    threshold: float | None
    reason: int | None  # the score reason decide appends (None: no score, nothing appended)


SCORES = (
    Score("no similarity", None, THRESHOLD, None),
    Score("no threshold", 0.9, None, None),
    Score("neither", None, None, None),
    Score("far above", 0.9, THRESHOLD, R.REASON_CODE_MATCH),
    Score("at threshold", THRESHOLD, THRESHOLD, R.REASON_CODE_MATCH),
    Score("in grey zone", THRESHOLD - GREY_ZONE / 2, THRESHOLD, R.REASON_CODE_INCONCLUSIVE),
    Score("at grey-zone floor", THRESHOLD - GREY_ZONE, THRESHOLD, R.REASON_CODE_INCONCLUSIVE),
    Score("just below grey zone", THRESHOLD - GREY_ZONE - 1e-6, THRESHOLD, R.REASON_CODE_NO_MATCH),
    Score("far below", -0.2, THRESHOLD, R.REASON_CODE_NO_MATCH),
)

#: (score reason, any blocker, any document reason) -> outcome. No score reason: never MATCH.
EXPECTED = {
    (None, False, False): INCONCLUSIVE,
    (None, False, True): INCONCLUSIVE,
    (None, True, False): INCONCLUSIVE,
    (None, True, True): INCONCLUSIVE,
    (R.REASON_CODE_MATCH, False, False): MATCH,  # the only way to MATCH
    (R.REASON_CODE_MATCH, False, True): INCONCLUSIVE,  # faces match, document does not pass
    (R.REASON_CODE_MATCH, True, False): INCONCLUSIVE,
    (R.REASON_CODE_MATCH, True, True): INCONCLUSIVE,
    (R.REASON_CODE_INCONCLUSIVE, False, False): INCONCLUSIVE,
    (R.REASON_CODE_INCONCLUSIVE, False, True): INCONCLUSIVE,
    (R.REASON_CODE_INCONCLUSIVE, True, False): INCONCLUSIVE,
    (R.REASON_CODE_INCONCLUSIVE, True, True): INCONCLUSIVE,
    (R.REASON_CODE_NO_MATCH, False, False): NO_MATCH,
    (R.REASON_CODE_NO_MATCH, False, True): NO_MATCH,  # a bad document does not make faces match
    (R.REASON_CODE_NO_MATCH, True, False): INCONCLUSIVE,  # an unreliable "no" is no answer
    (R.REASON_CODE_NO_MATCH, True, True): INCONCLUSIVE,
}


def expected(score: Score, reasons: tuple[int, ...]) -> int:
    blocked = any(code in BLOCKERS for code in reasons)
    document = any(code in DOCUMENT for code in reasons)
    return EXPECTED[(score.reason, blocked, document)]


def findings(score: Score, reasons: tuple[int, ...]) -> Findings:
    f = Findings(similarity=score.similarity, threshold=score.threshold, target_far=1e-3)
    for code in reasons:
        f.add(code, f"because {R.Name(code)}")
    return f


def check(score: Score, reasons: tuple[int, ...]) -> None:
    """decide gives the table's outcome, keeps the given reasons and appends the score reason."""
    f = findings(score, reasons)
    before = list(f.reasons)
    outcome = decide(f, GREY_ZONE)
    label = f"{score.name} with {[R.Name(c) for c in reasons]}"
    assert outcome == expected(score, reasons), f"{label}: got {M.Name(outcome)}"
    assert f.reasons[: len(before)] == before, f"{label}: the given reasons were changed"
    added = f.reasons[len(before) :]
    if score.reason is None:
        assert added == [], f"{label}: a score reason was added without a score"
    else:
        assert [r.code for r in added] == [score.reason], f"{label}: wrong score reason"
        assert f"{score.similarity:.4f}" in added[0].message
        assert f"{score.threshold:.4f}" in added[0].message
    if outcome == MATCH:
        assert not set(reasons), f"{label}: MATCH despite reasons against it"
        assert [r.code for r in f.reasons] == [R.REASON_CODE_MATCH]


def _label(reasons: tuple[int, ...]) -> str:
    return "+".join(R.Name(c).removeprefix("REASON_CODE_") for c in reasons) or "no reasons"


#: The empty set, every single weighed reason and every pair of them (67 sets).
SMALL_SETS = [s for n in (0, 1, 2) for s in itertools.combinations(WEIGHED, n)]


@pytest.mark.parametrize("score", SCORES, ids=[s.name for s in SCORES])
@pytest.mark.parametrize("reasons", SMALL_SETS, ids=[_label(s) for s in SMALL_SETS])
def test_every_single_reason_and_pair(score: Score, reasons: tuple[int, ...]) -> None:
    check(score, reasons)


@pytest.mark.parametrize("score", SCORES, ids=[s.name for s in SCORES])
def test_every_subset_of_reasons(score: Score) -> None:
    """All 2^11 subsets of the weighed reasons (one test per score state, to stay fast)."""
    subsets = 0
    for n in range(len(WEIGHED) + 1):
        for reasons in itertools.combinations(WEIGHED, n):
            check(score, reasons)
            subsets += 1
    assert subsets == 2 ** len(WEIGHED)


def test_only_a_clean_match_matches() -> None:
    """Across every subset and score state, MATCH comes out for exactly one combination."""
    matched = [
        (score.name, reasons)
        for score in SCORES
        for n in range(len(WEIGHED) + 1)
        for reasons in itertools.combinations(WEIGHED, n)
        if decide(findings(score, reasons), GREY_ZONE) == MATCH
    ]
    assert matched == [("far above", ()), ("at threshold", ())]


@pytest.mark.parametrize("code", WEIGHED, ids=[_label((c,)) for c in WEIGHED])
def test_a_reason_given_twice_counts_like_once(code: int) -> None:
    far_above = SCORES[3]
    assert decide(findings(far_above, (code, code)), GREY_ZONE) == INCONCLUSIVE


def test_a_zero_grey_zone_leaves_no_inconclusive_band() -> None:
    just_below = Findings(similarity=THRESHOLD - 1e-9, threshold=THRESHOLD)
    assert decide(just_below, 0.0) == NO_MATCH
    assert [r.code for r in just_below.reasons] == [R.REASON_CODE_NO_MATCH]
    at = Findings(similarity=THRESHOLD, threshold=THRESHOLD)
    assert decide(at, 0.0) == MATCH


def test_the_tables_match_the_rules_sets() -> None:
    assert frozenset(BLOCKERS) == COMPARISON_BLOCKERS
    assert frozenset(DOCUMENT) == DOCUMENT_REASONS


def test_every_reason_code_is_classified() -> None:
    """A new ReasonCode must be placed in one group here (and in the rule) before it can ship."""
    groups = (BLOCKERS, DOCUMENT, SCORE_REASONS, NOT_1_TO_1)
    classified = [code for group in groups for code in group]
    assert len(classified) == len(set(classified)), "a code is in two groups"
    assert sorted(classified) == sorted(R.values())
