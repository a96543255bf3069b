"""ParseMrz, ExtractPortrait(DG2) and fail-closed Verify over a real server whose downstream
services are unreachable (no models needed)."""

from __future__ import annotations

import grpc
import pytest

from facegate.v1 import common_pb2, docverify_pb2
from tests.docverify.dg2_builder import dg2_for_image, encode_portrait
from tests.docverify.specimens import CHECK_DIGITS, SPECIMENS, corrupted
from tests.support import FACES

PORTRAIT = FACES / "images" / "Ai_Sugiyama" / "Ai_Sugiyama_0001.jpg"
UTOPIA_TD3 = next(s for s in SPECIMENS if s["file"] == "passports_ICAO_Utopia_TD3_hires.jpg")
R = common_pb2.ReasonCode


def test_parse_mrz_reports_fields_and_checks(offline_stub):
    result = offline_stub.ParseMrz(
        docverify_pb2.ParseMrzRequest(mrz="\n".join(UTOPIA_TD3["mrz"]), decision_date="2012-04-15")
    )
    assert result.valid and result.format == "TD3"
    assert (result.document_number, result.nationality) == ("L898902C3", "UTO")
    assert (result.birth_date, result.expiry_date, result.sex) == ("1974-08-12", "2012-04-15", "F")
    assert result.expired is False
    assert {c.field for c in result.checks} == {
        "document_number",
        "birth_date",
        "expiry_date",
        "optional_data",
        "composite",
    }
    later = offline_stub.ParseMrz(
        docverify_pb2.ParseMrzRequest(mrz="\n".join(UTOPIA_TD3["mrz"]), decision_date="2012-04-16")
    )
    assert later.expired is True and later.valid is True


def test_parse_mrz_invalid_is_an_answer(offline_stub):
    line, column, _ = CHECK_DIGITS["TD3"][1]
    result = offline_stub.ParseMrz(
        docverify_pb2.ParseMrzRequest(mrz="\n".join(corrupted(UTOPIA_TD3["mrz"], line, column)))
    )
    assert result.valid is False
    assert "check digit wrong: birth_date" in result.errors
    garbage = offline_stub.ParseMrz(docverify_pb2.ParseMrzRequest(mrz="hello"))
    assert garbage.valid is False and garbage.format == "" and garbage.errors


def test_parse_mrz_bad_decision_date_is_invalid_argument(offline_stub):
    with pytest.raises(grpc.RpcError) as info:
        offline_stub.ParseMrz(docverify_pb2.ParseMrzRequest(mrz="x", decision_date="31.12.2020"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ISO date" in info.value.details()


@pytest.mark.parametrize("fmt", ["JPEG", "JPEG2000"])
def test_extract_portrait_from_dg2(offline_stub, fmt):
    image = encode_portrait(PORTRAIT, fmt)
    reply = offline_stub.ExtractPortrait(
        docverify_pb2.ExtractPortraitRequest(dg2=dg2_for_image(image, fmt, 150, 150))
    )
    assert reply.portrait.data == image
    assert reply.source == docverify_pb2.PORTRAIT_SOURCE_DG2
    assert (reply.width, reply.height) == (150, 150)
    hint = common_pb2.IMAGE_FORMAT_JPEG if fmt == "JPEG" else common_pb2.IMAGE_FORMAT_JPEG2000
    assert reply.portrait.format_hint == hint


def test_extract_portrait_rejects_malformed_dg2_precisely(offline_stub):
    image = encode_portrait(PORTRAIT, "JPEG")
    data = dg2_for_image(image, "JPEG", 150, 150)
    for bad, fragment in [
        (data[:-1], "declares"),
        (b"\x75\x84\xff\xff\xff\xff\x00", "declares 4294967295 bytes"),
        (b"\x30" + data[1:], "must start with tag 75"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            offline_stub.ExtractPortrait(docverify_pb2.ExtractPortraitRequest(dg2=bad))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in info.value.details()
    # The image inside a well-formed DG2 is corrupt: still a precise INVALID_ARGUMENT.
    broken = image[:200] + bytes(len(image) - 200)
    with pytest.raises(grpc.RpcError) as info:
        offline_stub.ExtractPortrait(
            docverify_pb2.ExtractPortraitRequest(dg2=dg2_for_image(broken, "JPEG", 150, 150))
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("DG2 JPEG image:")


def test_extract_portrait_needs_a_source(offline_stub):
    with pytest.raises(grpc.RpcError) as info:
        offline_stub.ExtractPortrait(docverify_pb2.ExtractPortraitRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_verify_fails_closed_when_downstream_unreachable(offline_stub):
    image = PORTRAIT.read_bytes()
    reply = offline_stub.Verify(
        docverify_pb2.VerifyRequest(
            live=common_pb2.Image(data=image),
            portrait_image=common_pb2.Image(data=image),
            mrz="\n".join(UTOPIA_TD3["mrz"]),
            decision_date="2010-01-01",
        )
    )
    assert reply.outcome == docverify_pb2.MATCH_OUTCOME_INCONCLUSIVE
    codes = [r.code for r in reply.reasons]
    assert R.REASON_CODE_SERVICE_UNAVAILABLE in codes
    assert R.REASON_CODE_MATCH not in codes
    assert reply.mrz.valid and not reply.mrz.expired  # local checks still reported


def test_verify_with_invalid_dg2_reports_the_reason(offline_stub):
    reply = offline_stub.Verify(
        docverify_pb2.VerifyRequest(live=common_pb2.Image(data=PORTRAIT.read_bytes()), dg2=b"\x75\x01")
    )
    assert reply.outcome == docverify_pb2.MATCH_OUTCOME_INCONCLUSIVE
    assert reply.portrait_source == docverify_pb2.PORTRAIT_SOURCE_DG2
    dg2_reasons = [r for r in reply.reasons if r.code == R.REASON_CODE_DG2_INVALID]
    assert dg2_reasons and "declares 1 bytes but only 0 remain" in dg2_reasons[0].message


@pytest.mark.parametrize(
    ("request_kwargs", "fragment"),
    [
        ({}, "live image is required"),
        ({"live": common_pb2.Image(data=b"x")}, "set one of portrait_image, dg2 or page_scan"),
        (
            {"live": common_pb2.Image(data=b"x"), "dg2": b"\x75\x00", "target_far": 1.5},
            "target_far",
        ),
        ({"live": common_pb2.Image(data=b"x"), "dg2": b"\x75\x00", "decision_date": "soon"}, "ISO date"),
    ],
)
def test_verify_request_errors(offline_stub, request_kwargs, fragment):
    with pytest.raises(grpc.RpcError) as info:
        offline_stub.Verify(docverify_pb2.VerifyRequest(**request_kwargs))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in info.value.details()
