"""The specimen documents: hand-transcribed MRZs, portrait positions, holders (data/specimens.json)."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SPECIMENS: list[dict] = json.loads((DATA / "specimens.json").read_text())["specimens"]

#: Check-digit positions per format: (line, column, check name), ICAO 9303 Parts 4-6.
CHECK_DIGITS: dict[str, list[tuple[int, int, str]]] = {
    "TD1": [(0, 14, "document_number"), (1, 6, "birth_date"), (1, 14, "expiry_date"), (1, 29, "composite")],
    "TD2": [(1, 9, "document_number"), (1, 19, "birth_date"), (1, 27, "expiry_date"), (1, 35, "composite")],
    "TD3": [
        (1, 9, "document_number"),
        (1, 19, "birth_date"),
        (1, 27, "expiry_date"),
        (1, 42, "optional_data"),
        (1, 43, "composite"),
    ],
    "MRVA": [(1, 9, "document_number"), (1, 19, "birth_date"), (1, 27, "expiry_date")],
    "MRVB": [(1, 9, "document_number"), (1, 19, "birth_date"), (1, 27, "expiry_date")],
}


def corrupted(lines: list[str], line: int, column: int) -> list[str]:
    """The MRZ with one check digit changed to a different digit."""
    out = list(lines)
    digit = out[line][column]
    new = str((int(digit) + 1) % 10) if digit.isdigit() else "1"
    out[line] = out[line][:column] + new + out[line][column + 1 :]
    return out


def valid_specimens() -> list[dict]:
    return [s for s in SPECIMENS if s["valid"]]
