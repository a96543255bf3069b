"""MRZ parsing and check digits on the hand-transcribed specimen MRZs (no servers needed)."""

from __future__ import annotations

import datetime as dt

import pytest
from mrz.base.functions import hash_string

from services.docverify.mrz_check import check_mrz, parse_decision_date
from services.runtime.errors import InvalidArgument
from tests.docverify.specimens import CHECK_DIGITS, SPECIMENS, corrupted, valid_specimens
from tests.support import DOCUMENTS

ON = dt.date(2026, 11, 28)


def test_every_specimen_image_has_a_transcribed_mrz():
    images = {p.name for p in DOCUMENTS.iterdir() if p.suffix in (".png", ".jpg")}
    assert images == {s["file"] for s in SPECIMENS}
    formats = {s["format"] for s in SPECIMENS}
    assert formats == {"TD1", "TD2", "TD3", "MRVA", "MRVB"}


@pytest.mark.parametrize("spec", SPECIMENS, ids=lambda s: s["file"])
def test_specimen_fields_and_validity(spec):
    report = check_mrz("\n".join(spec["mrz"]), ON)
    assert report.format == spec["format"]
    assert report.valid is spec["valid"], report.errors
    assert report.document_type == spec["document_type"]
    assert report.issuing_state == spec["issuing_state"]
    assert report.document_number == spec["document_number"]
    assert report.nationality == spec["nationality"]
    assert report.birth_date.isoformat() == spec["birth_date"]
    assert report.expiry_date.isoformat() == spec["expiry_date"]
    assert report.sex == spec["sex"]
    if spec["valid"]:
        assert report.errors == []
        assert report.checks and all(c.valid for c in report.checks)
    else:
        assert sorted(c.field for c in report.checks if not c.valid) == spec["failed_checks"]


def _corruptions():
    for spec in valid_specimens():
        for line, column, name in CHECK_DIGITS[spec["format"]]:
            if spec["mrz"][line][column] == "<":
                continue  # an unused optional-data check digit ('<') has nothing to corrupt
            yield pytest.param(spec, line, column, name, id=f"{spec['file']}-{name}")


@pytest.mark.parametrize(("spec", "line", "column", "name"), list(_corruptions()))
def test_each_corrupted_check_digit_is_caught(spec, line, column, name):
    report = check_mrz("\n".join(corrupted(spec["mrz"], line, column)), ON)
    assert report.valid is False
    verdicts = {c.field: c.valid for c in report.checks}
    assert verdicts[name] is False
    assert f"check digit wrong: {name}" in report.errors


def test_corrupting_a_field_breaks_its_check_and_the_composite():
    spec = next(s for s in SPECIMENS if s["file"] == "passports_ICAO_Utopia_TD3_hires.jpg")
    lines = list(spec["mrz"])
    lines[1] = lines[1][:13] + "8" + lines[1][14:]  # birth year 74 -> 84
    report = check_mrz("\n".join(lines), ON)
    failed = {c.field for c in report.checks if not c.valid}
    assert failed == {"birth_date", "composite"}


def _td1(number: str, sex: str = "F") -> list[str]:
    """A TD1 built per ICAO 9303 Part 5, including the long-document-number overflow rule."""
    if len(number) > 9:
        line1 = ("I<UTO" + number[:9] + "<" + number[9:] + hash_string(number)).ljust(30, "<")
    else:
        line1 = ("I<UTO" + number.ljust(9, "<") + hash_string(number.ljust(9, "<"))).ljust(30, "<")
    body = "740812" + hash_string("740812") + sex + "120415" + hash_string("120415") + "UTO"
    line2 = body.ljust(29, "<")
    line2 += hash_string(line1[5:30] + line2[0:7] + line2[8:15] + line2[18:29])
    return [line1, line2, "ERIKSSON<<ANNA<MARIA".ljust(30, "<")]


def test_long_document_number_follows_icao_overflow_rule():
    # The `mrz` package alone reports a false document-number check for this layout (the gap filled).
    report = check_mrz("\n".join(_td1("D23145890734")), ON)
    assert report.valid, report.errors
    assert report.document_number == "D23145890734"
    lines = _td1("D23145890734")
    lines[0] = lines[0][:18] + str((int(lines[0][18]) + 1) % 10) + lines[0][19:]
    bad = check_mrz("\n".join(lines), ON)
    assert not bad.valid
    assert {c.field for c in bad.checks if not c.valid} >= {"document_number"}


def test_sex_x_is_valid_per_icao():
    assert check_mrz("\n".join(_td1("D23145890", sex="X")), ON).valid
    assert not check_mrz("\n".join(_td1("D23145890", sex="Q")), ON).valid


def test_expiry_is_judged_on_the_decision_date():
    spec = next(s for s in SPECIMENS if s["file"] == "passports_Canada.png")  # expires 2023-01-14
    text = "\n".join(spec["mrz"])
    assert check_mrz(text, dt.date(2023, 1, 14)).expired is False
    assert check_mrz(text, dt.date(2023, 1, 15)).expired is True
    assert check_mrz(text, dt.date(2023, 1, 15)).valid  # expiry is a separate reason, not an invalid MRZ


def test_impossible_dates_are_errors():
    lines = _td1("D23145890")
    lines[1] = "741312" + lines[1][6:]  # month 13
    report = check_mrz("\n".join(lines), ON)
    assert not report.valid
    assert any("birth date" in e for e in report.errors)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   \n \n", "empty"),
        ("P<UTOERIKSSON<<ANNA<MARIA\nL898902C36UTO", "matches no ICAO 9303 format"),
        (
            "p<utoeriksson<<anna<maria<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10",
            "characters",
        ),
        ("P<UTO ERIKSSON", "characters"),
        ("A" * 44 + "\n" + "B" * 36, "matches no ICAO 9303 format"),
        ("V" * 44 + "\n" + "V" * 44, "check digit wrong"),
    ],
)
def test_malformed_mrz_is_a_reason_not_a_crash(text, fragment):
    report = check_mrz(text, ON)
    assert report.valid is False
    assert any(fragment in e for e in report.errors), report.errors


def test_line_endings_and_padding_are_tolerated():
    spec = next(s for s in SPECIMENS if s["format"] == "TD1" and s["valid"])
    assert check_mrz("\r\n".join(spec["mrz"]) + "\r\n", ON).valid
    assert check_mrz("  " + "\n\n".join(spec["mrz"]) + "  ", ON).valid


def test_oversized_mrz_is_invalid_argument():
    with pytest.raises(InvalidArgument, match="characters"):
        check_mrz("<" * 10_000, ON)


def test_decision_date_parsing():
    assert parse_decision_date("2024-02-29") == dt.date(2024, 2, 29)
    assert parse_decision_date("") == dt.datetime.now(dt.UTC).date()
    with pytest.raises(InvalidArgument, match="ISO date"):
        parse_decision_date("29/02/2024")
