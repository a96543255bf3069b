"""The gate decision rule, table-driven: every reason code alone and in pairs, every screening
state, hit kinds and the >= threshold boundary, missing verification, model mismatch, odd answers
(fail closed), the kiosk instructions, and what kiosk_view lets a kiosk see.

The expectations are written from the rule in the issue, not computed by the code under test:
ACCEPT appears only in rows where every check ran and passed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest

from facegate.v1 import common_pb2, docverify_pb2, watchlist_pb2
from gateway.decision import (
    ACCEPT_INSTRUCTION,
    REFER_INSTRUCTION,
    GateDecision,
    Hit,
    Screening,
    ScreeningStatus,
    decide_gate,
    kiosk_view,
)

R = common_pb2.ReasonCode
OUT = common_pb2.Outcome
M = docverify_pb2.MatchOutcome
Q = common_pb2.QualityCheck
K = watchlist_pb2.WatchlistKind

ACCEPT, RETRY, REFER = OUT.OUTCOME_ACCEPT, OUT.OUTCOME_RETRY, OUT.OUTCOME_REFER
MODEL = "6acdd8fb" + "0" * 56
THRESHOLD, FAR = 0.5089, 1e-3
WL_THRESHOLD = 0.55

CAPTURE = {R.REASON_CODE_NO_FACE, R.REASON_CODE_MULTIPLE_FACES, R.REASON_CODE_QUALITY_TOO_LOW}
SCORE = {R.REASON_CODE_MATCH, R.REASON_CODE_NO_MATCH, R.REASON_CODE_INCONCLUSIVE}


# ---- builders ---------------------------------------------------------------------------------


def verify(
    *codes: int,
    outcome: int | None = None,
    similarity: float = 0.71,
    threshold: float = THRESHOLD,
    target_far: float = FAR,
    model: str = MODEL,
    failed: tuple[int, ...] = (),
    mrz: docverify_pb2.MrzResult | None = None,
) -> docverify_pb2.VerifyResponse:
    """A docverify answer; with no codes, a clean MATCH."""
    codes = codes or (R.REASON_CODE_MATCH,)
    if outcome is None:
        outcome = (
            M.MATCH_OUTCOME_MATCH if set(codes) == {R.REASON_CODE_MATCH} else M.MATCH_OUTCOME_INCONCLUSIVE
        )
    response = docverify_pb2.VerifyResponse(
        outcome=outcome,
        similarity=similarity,
        threshold=threshold,
        target_far=target_far,
        model_version=model,
        reasons=[common_pb2.Reason(code=c, message=f"reason {c}") for c in codes],
        live_quality=common_pb2.Quality(acceptable=not failed, failed=failed),
    )
    if mrz is not None:
        response.mrz.CopyFrom(mrz)
    return response


def mrz(valid: bool = True, expired: bool = False) -> docverify_pb2.MrzResult:
    return docverify_pb2.MrzResult(
        format="TD3", valid=valid, expired=expired, expiry_date="2020-01-01", errors=[] if valid else ["bad"]
    )


def hit(
    kind: int = K.WATCHLIST_KIND_WANTED, score: float = 0.8, subject: str = "s-1", wl: str = "wanted"
) -> Hit:
    return Hit(subject_id=subject, watchlist=wl, kind=kind, score=score)


def screened(*hits: Hit, threshold: float = WL_THRESHOLD, far: float = FAR, model: str = MODEL) -> Screening:
    return Screening.completed(hits, threshold, far, model)


CLEAR = screened()


def codes(decision: GateDecision) -> set[int]:
    return {r.code for r in decision.reasons}


def code_list(decision: GateDecision) -> list[int]:
    return [r.code for r in decision.reasons]


# ---- verification variants x screening variants (ACCEPT only where everything passed) ---------

VERIFICATIONS: dict[str, Callable[[], tuple[docverify_pb2.VerifyResponse | None, str | None]]] = {
    "good": lambda: (verify(), None),
    "good_with_mrz": lambda: (verify(mrz=mrz()), None),
    "missing": lambda: (None, "docverify: connection refused"),
    "missing_no_error": lambda: (None, None),
    "present_with_error": lambda: (verify(), "deadline exceeded"),
    "no_match": lambda: (
        verify(R.REASON_CODE_NO_MATCH, outcome=M.MATCH_OUTCOME_NO_MATCH, similarity=0.1),
        None,
    ),
    "grey_zone": lambda: (verify(R.REASON_CODE_INCONCLUSIVE, similarity=0.49), None),
    "no_face": lambda: (verify(R.REASON_CODE_NO_FACE, model=""), None),
    "quality": lambda: (
        verify(R.REASON_CODE_QUALITY_TOO_LOW, R.REASON_CODE_NO_MATCH, failed=(Q.QUALITY_CHECK_YAW,)),
        None,
    ),
    "mrz_invalid_flag_only": lambda: (verify(mrz=mrz(valid=False)), None),
    "expired_flag_only": lambda: (verify(mrz=mrz(expired=True)), None),
    "uncalibrated_match": lambda: (verify(target_far=0.0), None),
    "nan_threshold_match": lambda: (verify(threshold=math.nan), None),
    "match_without_reason": lambda: (verify(R.REASON_CODE_UNSPECIFIED, outcome=M.MATCH_OUTCOME_MATCH), None),
    "match_no_reasons": lambda: (
        docverify_pb2.VerifyResponse(outcome=M.MATCH_OUTCOME_MATCH, target_far=FAR),
        None,
    ),
    "match_without_model": lambda: (verify(model=""), None),
    "unspecified_outcome": lambda: (docverify_pb2.VerifyResponse(), None),
    "unknown_outcome": lambda: (verify(outcome=7), None),
    "unknown_reason": lambda: (verify(R.REASON_CODE_MATCH, 99, outcome=M.MATCH_OUTCOME_MATCH), None),
    "stray_clear": lambda: (
        verify(R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_CLEAR, outcome=M.MATCH_OUTCOME_MATCH),
        None,
    ),
}
GOOD_VERIFICATIONS = {"good", "good_with_mrz"}

SCREENINGS: dict[str, Callable[[], Screening]] = {
    "clear": lambda: CLEAR,
    "allow_hit": lambda: screened(hit(K.WATCHLIST_KIND_ALLOW, 0.9, wl="crew")),
    "wanted_below": lambda: screened(hit(score=WL_THRESHOLD - 1e-6)),
    "wanted_hit": lambda: screened(hit()),
    "wanted_at_threshold": lambda: screened(hit(score=WL_THRESHOLD)),
    "alert_hit": lambda: screened(hit(K.WATCHLIST_KIND_ALERT, wl="stolen")),
    "unknown_kind_hit": lambda: screened(hit(K.WATCHLIST_KIND_UNSPECIFIED)),
    "nan_score": lambda: screened(hit(score=math.nan)),
    "unavailable": lambda: Screening.unavailable("watchlist: UNAVAILABLE"),
    "not_run": lambda: Screening.not_run(),
    "uncalibrated": lambda: screened(far=0.0),
    "nan_threshold": lambda: screened(threshold=math.nan),
    "other_model": lambda: screened(model="ffff" + "0" * 60),
    "no_model": lambda: screened(model=""),
}
GOOD_SCREENINGS = {"clear", "allow_hit", "wanted_below"}


@pytest.mark.parametrize("s_name", SCREENINGS)
@pytest.mark.parametrize("v_name", VERIFICATIONS)
def test_accept_only_when_every_check_passed(v_name: str, s_name: str) -> None:
    verification, error = VERIFICATIONS[v_name]()
    decision = decide_gate(verification, error, SCREENINGS[s_name]())
    all_passed = v_name in GOOD_VERIFICATIONS and s_name in GOOD_SCREENINGS
    assert (decision.outcome == ACCEPT) == all_passed
    against = codes(decision) - {R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_CLEAR}
    if decision.outcome == ACCEPT:
        assert code_list(decision) == [R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_CLEAR]
        assert decision.instruction == ACCEPT_INSTRUCTION
    else:
        assert against, "a non-ACCEPT decision must say what stands against the traveller"
        assert decision.outcome in (RETRY, REFER)
    if decision.outcome == RETRY:
        assert against & CAPTURE
        assert not against - CAPTURE - SCORE
    assert not {R.REASON_CODE_WATCHLIST_CLEAR, R.REASON_CODE_WATCHLIST_HIT} <= codes(decision)
    assert_kiosk_safe(decision)


# ---- every single reason code ------------------------------------------------------------------


def inputs(*codes_: int) -> tuple[docverify_pb2.VerifyResponse, Screening]:
    """Inputs that produce ``codes_``: a watchlist hit comes from the screening, the rest from
    docverify (outcome INCONCLUSIVE unless only MATCH; the live capture failed sharpness)."""
    doc = tuple(c for c in codes_ if c != R.REASON_CODE_WATCHLIST_HIT)
    outcome = None if set(doc) <= {R.REASON_CODE_MATCH} else M.MATCH_OUTCOME_INCONCLUSIVE
    verification = verify(*doc, outcome=outcome, failed=(Q.QUALITY_CHECK_SHARPNESS,))
    return verification, screened(hit()) if R.REASON_CODE_WATCHLIST_HIT in codes_ else CLEAR


ALL_CODES = sorted(R.values())


@pytest.mark.parametrize("code", ALL_CODES, ids=lambda c: R.Name(c))
@pytest.mark.parametrize("with_match", [False, True], ids=["inconclusive", "beside_match"])
def test_every_single_reason(code: int, with_match: bool) -> None:
    """Each reason docverify could send, alone (outcome INCONCLUSIVE) or beside a MATCH score."""
    screening = CLEAR
    if code == R.REASON_CODE_MATCH:
        verification = verify() if with_match else verify(code, outcome=M.MATCH_OUTCOME_INCONCLUSIVE)
        expected = ACCEPT if with_match else REFER
    else:
        reasons = (R.REASON_CODE_MATCH, code) if with_match else (code,)
        verification, screening = inputs(*reasons)
        expected = RETRY if code in CAPTURE else REFER
    decision = decide_gate(verification, None, screening)
    assert decision.outcome == expected
    assert code in codes(decision), "every reason that applies is listed"
    assert_kiosk_safe(decision)


@pytest.mark.parametrize(
    "codes_, outcome, instruction",
    [
        ((R.REASON_CODE_NO_FACE,), RETRY, "Please look at the camera"),
        ((R.REASON_CODE_MULTIPLE_FACES, R.REASON_CODE_MATCH), RETRY, "Only one person at a time, please"),
        ((R.REASON_CODE_QUALITY_TOO_LOW, R.REASON_CODE_MATCH), RETRY, "Please hold still"),
        ((R.REASON_CODE_PORTRAIT_NOT_FOUND,), REFER, REFER_INSTRUCTION),
        ((R.REASON_CODE_PORTRAIT_QUALITY_TOO_LOW, R.REASON_CODE_MATCH), REFER, REFER_INSTRUCTION),
        ((R.REASON_CODE_DG2_INVALID,), REFER, REFER_INSTRUCTION),
        ((R.REASON_CODE_MRZ_INVALID, R.REASON_CODE_MATCH), REFER, REFER_INSTRUCTION),
        ((R.REASON_CODE_DOCUMENT_EXPIRED, R.REASON_CODE_MATCH), REFER, REFER_INSTRUCTION),
        ((R.REASON_CODE_INVALID_INPUT,), REFER, REFER_INSTRUCTION),
        ((R.REASON_CODE_INCONCLUSIVE,), REFER, REFER_INSTRUCTION),
        ((R.REASON_CODE_SERVICE_UNAVAILABLE,), REFER, REFER_INSTRUCTION),
        ((R.REASON_CODE_MODEL_VERSION_MISMATCH,), REFER, REFER_INSTRUCTION),
    ],
    ids=lambda v: (
        "+".join(R.Name(c).removeprefix("REASON_CODE_") for c in v) if isinstance(v, tuple) else None
    ),
)
def test_named_rows(codes_: tuple[int, ...], outcome: int, instruction: str) -> None:
    decision = decide_gate(verify(*codes_, failed=(Q.QUALITY_CHECK_SHARPNESS,)), None, CLEAR)
    assert (decision.outcome, decision.instruction) == (outcome, instruction)
    assert set(codes_) <= codes(decision)


def test_no_match_refers_with_both_scores() -> None:
    decision = decide_gate(
        verify(R.REASON_CODE_NO_MATCH, outcome=M.MATCH_OUTCOME_NO_MATCH, similarity=0.12), None, CLEAR
    )
    assert decision.outcome == REFER
    assert code_list(decision) == [R.REASON_CODE_NO_MATCH, R.REASON_CODE_WATCHLIST_CLEAR]
    by_name = {s.name: s for s in decision.scores}
    assert by_name["document_similarity"].value == pytest.approx(0.12)
    assert by_name["document_similarity"].threshold == pytest.approx(THRESHOLD)
    assert by_name["document_similarity"].target_far == pytest.approx(FAR)
    assert by_name["watchlist_top1"].threshold == pytest.approx(WL_THRESHOLD)


# ---- pairs: REFER beats RETRY ------------------------------------------------------------------

AGAINST = [c for c in ALL_CODES if c not in (R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_CLEAR)]


def expected_for_pair(a: int, b: int) -> int:
    """The issue's rule, stated independently: any REFER reason wins; score verdicts beside a
    capture problem are moot (the comparison was unreliable), so they leave a RETRY."""
    pair = {a, b}
    capture = pair & CAPTURE
    refer = pair - CAPTURE - (SCORE if capture else set())
    return REFER if refer else RETRY if capture else REFER


@pytest.mark.parametrize(
    "a, b",
    list(itertools.combinations(AGAINST, 2)),
    ids=lambda c: R.Name(c).removeprefix("REASON_CODE_") if c in R.values() else str(c),
)
def test_pairs_of_reasons(a: int, b: int) -> None:
    verification, screening = inputs(a, b)
    decision = decide_gate(verification, None, screening)
    assert decision.outcome == expected_for_pair(a, b)
    assert {a, b} <= codes(decision)


@pytest.mark.parametrize(
    "reasons, screening, outcome",
    [
        ((R.REASON_CODE_NO_FACE, R.REASON_CODE_DOCUMENT_EXPIRED), Screening.not_run(), REFER),
        ((R.REASON_CODE_NO_FACE, R.REASON_CODE_MRZ_INVALID), Screening.not_run(), REFER),
        ((R.REASON_CODE_QUALITY_TOO_LOW, R.REASON_CODE_PORTRAIT_NOT_FOUND), CLEAR, REFER),
        ((R.REASON_CODE_MULTIPLE_FACES, R.REASON_CODE_DG2_INVALID), CLEAR, REFER),
        ((R.REASON_CODE_QUALITY_TOO_LOW, R.REASON_CODE_NO_MATCH), CLEAR, RETRY),
        ((R.REASON_CODE_QUALITY_TOO_LOW,), screened(hit()), REFER),  # a watchlist hit beats a retry
        ((R.REASON_CODE_MULTIPLE_FACES,), Screening.unavailable("down"), REFER),
        ((R.REASON_CODE_NO_FACE,), Screening.not_run("no live template"), RETRY),  # nothing to screen with
        ((R.REASON_CODE_NO_FACE, R.REASON_CODE_MULTIPLE_FACES), Screening.not_run(), RETRY),
    ],
)
def test_capture_problem_beside_other_checks(
    reasons: tuple[int, ...], screening: Screening, outcome: int
) -> None:
    decision = decide_gate(verify(*reasons, model=""), None, screening)
    assert decision.outcome == outcome
    assert set(reasons) <= codes(decision)


def test_screening_not_run_is_no_reason_when_the_capture_explains_it() -> None:
    decision = decide_gate(verify(R.REASON_CODE_NO_FACE, model=""), None, Screening.not_run())
    assert code_list(decision) == [R.REASON_CODE_NO_FACE]
    assert decision.instruction == "Please look at the camera"


# ---- screening states --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "screening, outcome, expected_codes",
    [
        (CLEAR, ACCEPT, [R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_CLEAR]),
        (Screening.unavailable("timeout"), REFER, [R.REASON_CODE_MATCH, R.REASON_CODE_SERVICE_UNAVAILABLE]),
        (Screening.not_run(), REFER, [R.REASON_CODE_MATCH, R.REASON_CODE_SERVICE_UNAVAILABLE]),
        (screened(far=0.0), REFER, [R.REASON_CODE_MATCH, R.REASON_CODE_SERVICE_UNAVAILABLE]),
        (screened(model="other"), REFER, [R.REASON_CODE_MATCH, R.REASON_CODE_MODEL_VERSION_MISMATCH]),
        (screened(hit()), REFER, [R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_HIT]),
        (
            screened(
                hit(),
                hit(K.WATCHLIST_KIND_ALERT, 0.6, "s-2", "stolen"),
                hit(K.WATCHLIST_KIND_ALLOW, 0.9, "s-3", "crew"),
            ),
            REFER,
            [R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_HIT, R.REASON_CODE_WATCHLIST_HIT],
        ),
        (
            screened(hit(K.WATCHLIST_KIND_ALLOW, 0.99)),
            ACCEPT,
            [R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_CLEAR],
        ),
        (screened(hit(score=WL_THRESHOLD)), REFER, [R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_HIT]),
        (
            screened(hit(score=WL_THRESHOLD - 1e-6)),
            ACCEPT,
            [R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_CLEAR],
        ),
        (
            screened(hit(K.WATCHLIST_KIND_ALERT, WL_THRESHOLD)),
            REFER,
            [R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_HIT],
        ),
    ],
    ids=[
        "clear",
        "unavailable",
        "not_run",
        "uncalibrated",
        "model_mismatch",
        "wanted_hit",
        "two_hits_and_allow",
        "allow_hit",
        "wanted_at_threshold",
        "wanted_just_below",
        "alert_at_threshold",
    ],
)
def test_screening_states(screening: Screening, outcome: int, expected_codes: list[int]) -> None:
    decision = decide_gate(verify(), None, screening)
    assert decision.outcome == outcome
    assert code_list(decision) == expected_codes


def test_unavailable_screening_carries_its_message() -> None:
    decision = decide_gate(verify(), None, Screening.unavailable("watchlist: deadline exceeded"))
    unavailable = [r for r in decision.reasons if r.code == R.REASON_CODE_SERVICE_UNAVAILABLE]
    assert "deadline exceeded" in unavailable[0].message


def test_hits_are_named_by_id_and_allow_hits_kept_for_officers() -> None:
    allow = hit(K.WATCHLIST_KIND_ALLOW, 0.91, "crew-7", "crew")
    decision = decide_gate(verify(), None, screened(hit(score=0.62, subject="w-42"), allow))
    message = next(r.message for r in decision.reasons if r.code == R.REASON_CODE_WATCHLIST_HIT)
    assert "w-42" in message and "WANTED" in message and "0.6200" in message and "0.5500" in message
    assert decision.allow_hits == [allow]
    top1 = next(s for s in decision.scores if s.name == "watchlist_top1")
    assert (top1.value, top1.threshold, top1.target_far) == (
        pytest.approx(0.91),
        pytest.approx(WL_THRESHOLD),
        FAR,
    )


def test_model_version_mismatch_blocks_a_clear() -> None:
    decision = decide_gate(verify(), None, screened(model="b" * 64))
    assert decision.outcome == REFER
    assert R.REASON_CODE_WATCHLIST_CLEAR not in codes(decision)
    mismatch = next(r for r in decision.reasons if r.code == R.REASON_CODE_MODEL_VERSION_MISMATCH)
    assert "bbbbbbbbbbbb" in mismatch.message and MODEL[:12] in mismatch.message


def test_from_search_response() -> None:
    response = watchlist_pb2.SearchResponse(
        results=[
            watchlist_pb2.SearchResult(
                candidates=[
                    watchlist_pb2.Candidate(
                        subject_id="s-9", watchlist="wanted", kind=K.WATCHLIST_KIND_WANTED, score=0.75
                    )
                ]
            )
        ],
        threshold=WL_THRESHOLD,
        target_far=FAR,
        model_version=MODEL,
    )
    screening = Screening.from_search(response)
    assert screening.status is ScreeningStatus.COMPLETED
    assert screening.hits == (Hit("s-9", "wanted", K.WATCHLIST_KIND_WANTED, pytest.approx(0.75)),)
    assert (screening.threshold, screening.target_far, screening.model_version) == (
        pytest.approx(WL_THRESHOLD),
        FAR,
        MODEL,
    )
    assert decide_gate(verify(), None, screening).outcome == REFER
    assert Screening.from_search(watchlist_pb2.SearchResponse(threshold=0.5, target_far=FAR)).hits == ()


# ---- missing or odd verification ---------------------------------------------------------------


@pytest.mark.parametrize("code", [R.REASON_CODE_WATCHLIST_HIT, R.REASON_CODE_WATCHLIST_CLEAR], ids=R.Name)
def test_watchlist_reasons_from_docverify_are_not_believed(code: int) -> None:
    """Only the screening speaks about watchlists: a stray verdict in the 1:1 answer refers."""
    decision = decide_gate(verify(R.REASON_CODE_MATCH, code, outcome=M.MATCH_OUTCOME_MATCH), None, CLEAR)
    assert decision.outcome == REFER
    assert code_list(decision) == [
        R.REASON_CODE_MATCH,
        R.REASON_CODE_INCONCLUSIVE,
        R.REASON_CODE_WATCHLIST_CLEAR,
    ]
    assert R.Name(code) in decision.reasons[1].message


def test_missing_verification_refers_with_the_error() -> None:
    decision = decide_gate(None, "docverify: UNAVAILABLE connection refused", CLEAR)
    assert decision.outcome == REFER
    assert code_list(decision)[0] == R.REASON_CODE_SERVICE_UNAVAILABLE
    assert "connection refused" in decision.reasons[0].message
    assert [s.name for s in decision.scores] == ["watchlist_top1"]


def test_mrz_flags_are_checked_even_without_docverify_reasons() -> None:
    invalid = decide_gate(verify(mrz=mrz(valid=False)), None, CLEAR)
    assert invalid.outcome == REFER and R.REASON_CODE_MRZ_INVALID in codes(invalid)
    expired = decide_gate(verify(mrz=mrz(expired=True)), None, CLEAR)
    assert expired.outcome == REFER and R.REASON_CODE_DOCUMENT_EXPIRED in codes(expired)
    assert "2020-01-01" in next(
        r.message for r in expired.reasons if r.code == R.REASON_CODE_DOCUMENT_EXPIRED
    )


def test_mrz_reasons_are_not_doubled() -> None:
    verification = verify(
        R.REASON_CODE_MATCH,
        R.REASON_CODE_MRZ_INVALID,
        R.REASON_CODE_DOCUMENT_EXPIRED,
        mrz=mrz(valid=False, expired=True),
    )
    listed = code_list(decide_gate(verification, None, CLEAR))
    assert listed.count(R.REASON_CODE_MRZ_INVALID) == 1
    assert listed.count(R.REASON_CODE_DOCUMENT_EXPIRED) == 1


@pytest.mark.parametrize(
    "verification, added",
    [
        (verify(target_far=0.0), R.REASON_CODE_SERVICE_UNAVAILABLE),
        (
            docverify_pb2.VerifyResponse(outcome=M.MATCH_OUTCOME_MATCH, target_far=FAR, model_version=MODEL),
            R.REASON_CODE_INCONCLUSIVE,
        ),
        (
            docverify_pb2.VerifyResponse(outcome=M.MATCH_OUTCOME_NO_MATCH, target_far=FAR),
            R.REASON_CODE_NO_MATCH,
        ),
        (docverify_pb2.VerifyResponse(outcome=M.MATCH_OUTCOME_INCONCLUSIVE), R.REASON_CODE_INCONCLUSIVE),
        (docverify_pb2.VerifyResponse(), R.REASON_CODE_INCONCLUSIVE),
        (verify(outcome=M.MATCH_OUTCOME_INCONCLUSIVE), R.REASON_CODE_INCONCLUSIVE),
        (verify(model=""), R.REASON_CODE_MODEL_VERSION_MISMATCH),
    ],
    ids=[
        "uncalibrated",
        "match_without_score",
        "bare_no_match",
        "bare_inconclusive",
        "empty",
        "match_reason_inconclusive_outcome",
        "no_model",
    ],
)
def test_odd_verification_answers_refer_with_a_reason(
    verification: docverify_pb2.VerifyResponse, added: int
) -> None:
    decision = decide_gate(verification, None, CLEAR)
    assert decision.outcome == REFER
    assert added in codes(decision)


# ---- instructions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failed, instruction",
    [
        ((Q.QUALITY_CHECK_YAW,), "Please look straight at the camera"),
        ((Q.QUALITY_CHECK_PITCH,), "Please look straight at the camera"),
        ((Q.QUALITY_CHECK_ROLL,), "Please look straight at the camera"),
        ((Q.QUALITY_CHECK_INTER_EYE_DISTANCE,), "Please step closer"),
        ((Q.QUALITY_CHECK_BRIGHTNESS,), "Please step into the light"),
        ((Q.QUALITY_CHECK_CONTRAST,), "Please step into the light"),
        ((Q.QUALITY_CHECK_SHARPNESS,), "Please hold still"),
        ((Q.QUALITY_CHECK_FACE_IN_FRAME,), "Please stand in the centre"),
        ((Q.QUALITY_CHECK_DETECTOR_CONFIDENCE,), "Please look at the camera"),
        ((), "Please look at the camera"),
        ((Q.QUALITY_CHECK_SHARPNESS, Q.QUALITY_CHECK_YAW), "Please look straight at the camera"),
        ((Q.QUALITY_CHECK_YAW, Q.QUALITY_CHECK_INTER_EYE_DISTANCE), "Please step closer"),
        ((Q.QUALITY_CHECK_BRIGHTNESS, Q.QUALITY_CHECK_FACE_IN_FRAME), "Please stand in the centre"),
    ],
)
def test_quality_instructions(failed: tuple[int, ...], instruction: str) -> None:
    decision = decide_gate(
        verify(R.REASON_CODE_QUALITY_TOO_LOW, R.REASON_CODE_NO_MATCH, failed=failed), None, CLEAR
    )
    assert decision.outcome == RETRY
    assert decision.instruction == instruction


def test_several_faces_instruction_wins_over_quality() -> None:
    verification = verify(
        R.REASON_CODE_MULTIPLE_FACES, R.REASON_CODE_QUALITY_TOO_LOW, failed=(Q.QUALITY_CHECK_YAW,)
    )
    assert decide_gate(verification, None, CLEAR).instruction == "Only one person at a time, please"


# ---- what the kiosk sees -----------------------------------------------------------------------


def assert_kiosk_safe(decision: GateDecision) -> None:
    view = kiosk_view(decision)
    assert view.outcome == decision.outcome
    assert view.instruction == decision.instruction
    assert R.REASON_CODE_WATCHLIST_HIT not in codes(view)
    assert not [s for s in view.scores if s.name.startswith("watchlist")]
    assert view.allow_hits == []
    if view.outcome == REFER:
        assert (view.reasons, view.scores, view.instruction) == ([], [], REFER_INSTRUCTION)
    elif view.outcome == RETRY:
        assert codes(view) <= CAPTURE and codes(view)
        assert view.scores == []
    else:
        assert codes(view) == {R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_CLEAR}
        assert [s.name for s in view.scores] == ["document_similarity"]


def test_kiosk_cannot_tell_a_watchlist_hit_from_a_document_problem() -> None:
    hit_view = kiosk_view(decide_gate(verify(), None, screened(hit())))
    expired_view = kiosk_view(decide_gate(verify(mrz=mrz(expired=True)), None, CLEAR))
    down_view = kiosk_view(decide_gate(None, "docverify down", CLEAR))
    assert hit_view == expired_view == down_view
    assert hit_view.to_proto() == expired_view.to_proto()


def test_kiosk_view_of_a_retry_keeps_what_to_fix() -> None:
    decision = decide_gate(
        verify(R.REASON_CODE_QUALITY_TOO_LOW, R.REASON_CODE_NO_MATCH, failed=(Q.QUALITY_CHECK_BRIGHTNESS,)),
        None,
        CLEAR,
    )
    view = kiosk_view(decision)
    assert code_list(view) == [R.REASON_CODE_QUALITY_TOO_LOW]
    assert view.instruction == "Please step into the light"
    assert view.scores == [] and view.model_version == ""


def test_kiosk_view_of_an_accept_keeps_the_document_score_only() -> None:
    decision = decide_gate(verify(), None, screened(hit(K.WATCHLIST_KIND_ALLOW, 0.95)))
    view = kiosk_view(decision)
    assert view.outcome == ACCEPT
    assert [s.name for s in view.scores] == ["document_similarity"]
    assert view.model_version == MODEL
    assert view.allow_hits == []
    view.reasons[0].message = "changed"
    assert decision.reasons[0].message != "changed", "the view must not share messages with the decision"


def test_to_proto() -> None:
    decision = decide_gate(verify(), None, CLEAR)
    proto = decision.to_proto(common_pb2.Decision(decision_id="d-1"))
    assert proto.decision_id == "d-1"
    assert proto.outcome == ACCEPT
    assert [r.code for r in proto.reasons] == [R.REASON_CODE_MATCH, R.REASON_CODE_WATCHLIST_CLEAR]
    assert [s.name for s in proto.scores] == ["document_similarity", "watchlist_top1"]
    assert proto.model_version == MODEL
    assert decision.to_proto(proto) == proto  # refilling replaces, never appends
