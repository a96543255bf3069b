"""MRZ parsing and ICAO 9303 check-digit validation on top of the `mrz` package.

The `mrz` package (0.6.2) does the per-format slicing and check-digit arithmetic. It falls
short of ICAO 9303 in two places, filled here and covered by tests:

* **Long document numbers (TD1, TD2; 9303 Part 5 §4.2.2 note j, Part 6 §4.2.2).** When a document
  number is longer than 9 characters, the check-digit position holds ``<`` and the rest of the
  number plus its check digit continue in the optional data. `mrz` checks the 9-character stub
  against ``<`` and reports a false "document number hash" for every such document.
* **Sex ``X``** (unspecified, 9303 Part 4 §4.2.2) is rejected by `mrz` ("valid genre format").

Dates are also interpreted here rather than by `mrz`, which judges them against the machine's
clock: a decision is audited against its *decision date*, and the century of a two-digit year
depends on it (birth dates lie in the past; expiry dates within 50 years of the decision).

An invalid MRZ is an answer (``valid=False`` with the reasons), never an exception: a worn
document or an OCR slip must lead to a refer-to-officer decision, not a crashed request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from mrz.base.functions import hash_string
from mrz.checker.mrva import MRVACodeChecker
from mrz.checker.mrvb import MRVBCodeChecker
from mrz.checker.td1 import TD1CodeChecker
from mrz.checker.td2 import TD2CodeChecker
from mrz.checker.td3 import TD3CodeChecker

from services.runtime.errors import InvalidArgument

#: Longest MRZ text accepted (3 x 30 plus separators, with generous room for stray whitespace).
MAX_MRZ_CHARS = 512
MRZ_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<")

#: `mrz` report names of check digits -> the field names this service reports.
_CHECK_NAMES = {
    "document number hash": "document_number",
    "birth date hash": "birth_date",
    "expiry date hash": "expiry_date",
    "optional data hash": "optional_data",
    "final hash": "composite",
}


@dataclass(frozen=True)
class MrzCheck:
    field: str
    valid: bool


@dataclass
class MrzReport:
    """Everything the service reports about one MRZ (names are deliberately left out)."""

    format: str = ""
    valid: bool = False
    document_type: str = ""
    issuing_state: str = ""
    document_number: str = ""
    nationality: str = ""
    birth_date: dt.date | None = None
    expiry_date: dt.date | None = None
    sex: str = ""
    expired: bool = False
    checks: list[MrzCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_decision_date(text: str) -> dt.date:
    """The decision date from an ISO string; empty means today (UTC)."""
    if not text:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(f"decision_date {text[:32]!r} is not an ISO date (YYYY-MM-DD)") from None


def split_lines(text: str) -> list[str]:
    """MRZ lines as a reader gives them: trailing/leading blanks and empty lines dropped."""
    return [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]


def detect_format(lines: list[str]) -> str:
    """TD1 / TD2 / TD3 / MRVA / MRVB from the line count and length, or "" when none fits."""
    lengths = {len(line) for line in lines}
    if len(lengths) != 1:
        return ""
    (length,) = lengths
    visa = lines[0][:1] == "V"
    if len(lines) == 3 and length == 30:
        return "TD1"
    if len(lines) == 2 and length == 36:
        return "MRVB" if visa else "TD2"
    if len(lines) == 2 and length == 44:
        return "MRVA" if visa else "TD3"
    return ""


_CHECKERS = {
    "TD1": TD1CodeChecker,
    "TD2": TD2CodeChecker,
    "TD3": TD3CodeChecker,
    "MRVA": MRVACodeChecker,
    "MRVB": MRVBCodeChecker,
}


def check_mrz(text: str, decision_date: dt.date) -> MrzReport:
    """Parse ``text`` and validate every check digit; never raises for a malformed MRZ.

    Raises InvalidArgument only for input that cannot be an MRZ reading at all (oversized).
    """
    if len(text) > MAX_MRZ_CHARS:
        raise InvalidArgument(f"mrz is {len(text)} characters; an MRZ has at most 90 (limit {MAX_MRZ_CHARS})")
    report = MrzReport()
    lines = split_lines(text)
    if not lines:
        report.errors.append("MRZ is empty")
        return report
    bad = sorted({c for line in lines for c in line} - MRZ_ALPHABET)
    if bad:
        shown = "".join(bad)[:10]
        report.errors.append(f"MRZ contains characters outside A-Z, 0-9 and '<': {shown!r}")
        return report
    fmt = detect_format(lines)
    if not fmt:
        shape = " + ".join(str(len(line)) for line in lines)
        report.errors.append(
            f"MRZ shape {len(lines)} line(s) of {shape} characters matches no ICAO 9303 format "
            "(TD1 3x30, TD2/MRV-B 2x36, TD3/MRV-A 2x44)"
        )
        return report
    report.format = fmt
    try:
        checker = _CHECKERS[fmt]("\n".join(lines))
    except Exception as exc:  # the library raises its own error types for structural faults
        report.errors.append(f"{fmt} MRZ could not be parsed: {type(exc).__name__}")
        return report
    _fill_fields(report, lines, fmt)
    checks = {_CHECK_NAMES[name]: bool(ok) for name, ok in checker.report.fields if name in _CHECK_NAMES}
    if fmt in ("TD1", "TD2"):
        _fix_long_document_number(report, lines, fmt, checks)
    report.checks = [MrzCheck(name, ok) for name, ok in checks.items()]
    report.errors.extend(f"check digit wrong: {name}" for name, ok in checks.items() if not ok)
    _check_fields(report, lines, fmt, checker, decision_date)
    report.valid = not report.errors
    return report


def _fill_fields(report: MrzReport, lines: list[str], fmt: str) -> None:
    """Slice the reported fields (ICAO 9303 positions); names are never extracted."""
    first, second = lines[0], lines[1]
    report.document_type = first[0:2].rstrip("<")
    report.issuing_state = first[2:5].rstrip("<")
    if fmt == "TD1":
        report.document_number = first[5:14].rstrip("<")
        report.nationality = second[15:18].rstrip("<")
        report.sex = second[7]
    else:
        report.document_number = second[0:9].rstrip("<")
        report.nationality = second[10:13].rstrip("<")
        report.sex = second[20]


def _fix_long_document_number(report: MrzReport, lines: list[str], fmt: str, checks: dict[str, bool]) -> None:
    """ICAO 9303 long document number: stub, '<', then the overflow and its check digit in optional data."""
    if fmt == "TD1":
        stub, check_char, optional = lines[0][5:14], lines[0][14], lines[0][15:30]
    else:
        stub, check_char, optional = lines[1][0:9], lines[1][9], lines[1][28:35]
    if check_char != "<" or optional[:1] in ("", "<"):
        return
    overflow = optional.split("<", 1)[0]
    if len(overflow) < 2:
        report.errors.append("document number overflow has no room for its check digit")
        checks["document_number"] = False
        return
    number = stub + overflow[:-1]
    report.document_number = number
    checks["document_number"] = hash_string(number) == overflow[-1]


def _check_fields(report: MrzReport, lines: list[str], fmt: str, checker: object, on: dt.date) -> None:
    """Document type, sex and the two dates: the field checks a decision relies on."""
    failed = {name for name, ok in checker.report.fields if not ok}  # type: ignore[attr-defined]
    if "document type format" in failed:
        report.errors.append(f"document type {report.document_type!r} is not valid for {fmt}")
    if report.sex not in ("M", "F", "X", "<"):
        report.errors.append(f"sex {report.sex!r} is not M, F, X or '<'")
    if fmt == "TD1":
        birth, expiry = lines[1][0:6], lines[1][8:14]
    else:
        birth, expiry = lines[1][13:19], lines[1][21:27]
    report.birth_date = _birth_date(birth, on)
    report.expiry_date = _expiry_date(expiry, on)
    if report.birth_date is None:
        report.errors.append(f"birth date {birth!r} is not a calendar date (YYMMDD)")
    if report.expiry_date is None:
        report.errors.append(f"expiry date {expiry!r} is not a calendar date (YYMMDD)")
    else:
        # Valid through the expiry day itself.
        report.expired = report.expiry_date < on
    if report.birth_date and report.expiry_date and report.expiry_date <= report.birth_date:
        report.errors.append("expiry date is not after the birth date")


def _date(yymmdd: str, century: int) -> dt.date | None:
    if len(yymmdd) != 6 or not yymmdd.isdigit():
        return None
    try:
        return dt.date(century + int(yymmdd[0:2]), int(yymmdd[2:4]), int(yymmdd[4:6]))
    except ValueError:
        return None


def _birth_date(yymmdd: str, on: dt.date) -> dt.date | None:
    """A birth date is never after the decision date: pick the latest century that respects that."""
    recent = _date(yymmdd, 2000)
    if recent is not None and recent <= on:
        return recent
    # 29 February of a year that only leaps in the other century still lands here, correctly.
    return _date(yymmdd, 1900)


def _expiry_date(yymmdd: str, on: dt.date) -> dt.date | None:
    """An expiry date lies within 50 years either side of the decision date."""
    candidate = _date(yymmdd, 2000)
    if candidate is not None and candidate.year > on.year + 50:
        return _date(yymmdd, 1900)
    if candidate is None:
        return _date(yymmdd, 1900)
    return candidate
