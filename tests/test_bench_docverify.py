"""The docverify bench's own parts: the DG2 it sends and the report it writes (no servers)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.bench_docverify import _dg2, render
from services.docverify.dg2 import parse_dg2


@pytest.mark.parametrize("fmt", ["JPEG", "JPEG2000"])
def test_the_dg2_holds_the_portrait_in_the_format_asked(fmt: str) -> None:
    portrait = np.full((120, 90, 3), 180, dtype=np.uint8)
    face = parse_dg2(_dg2(portrait, fmt), max_bytes=1 << 20).primary
    assert (face.image_format, face.width, face.height) == (fmt, 90, 120)


def test_the_report_rounds_rpcs_to_ms_and_local_steps_to_microseconds() -> None:
    rows = [("live + DG2 (JPEG)", [60.0, 62.0, 70.0], 0), ("DG2 parse alone (in process)", [0.0123] * 3, 3)]
    report = render(rows, {"JPEG": ("MATCH_OUTCOME_MATCH", 0.8123)}, load_s=12.4, provisional=True)
    assert "| live + DG2 (JPEG) | 62 | 70 | 64 |" in report
    assert "| DG2 parse alone (in process) | 0.012 | 0.012 | 0.012 |" in report
    assert "Outcomes (same person, MRZ valid on 2010-06-01): JPEG: MATCH_OUTCOME_MATCH (0.812)." in report
    assert "Thresholds: provisional 0.5 (no calibration committed yet)." in report
    assert "warm-up (models loaded once): 12 s." in report
