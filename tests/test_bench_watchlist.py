"""The watchlist bench's report: every section it measured, none it did not (no servers)."""

from __future__ import annotations

import argparse

from bench.bench_watchlist import render

_TIMES = {"p50": 1.0, "p99": 2.0}
_SKETCH = {
    "kind": "random",
    "n": 1000,
    "threshold": 0.5,
    "probes": "planted",
    "exact": _TIMES,
    "sketch": _TIMES,
    "recall1": 1.0,
    "found": 1.0,
    "at_threshold": 1.0,
    "candidates": 10,
    "fallbacks": 0,
    "build": 1.0,
    "mem": 10,
    "exact_mem": 5,
}
_OUT = {
    "rows": [
        (
            "lite+memory",
            1000,
            {**_TIMES, "recall": 1.0, "mate": 1.0, "batch_p50": 3.0, "batch_per_probe": 0.1},
        )
    ],
    "memory": {1000: {**_TIMES, "batch_per_probe": 0.01}},
    "gate": [
        ("lite+memory", 1000, {"planted": {**_TIMES, "recall1": 1.0}, "random": {**_TIMES, "recall1": 1.0}})
    ],
    "sketch": [_SKETCH, {**_SKETCH, "probes": "random"}],
    "consistency": {"rounds": 3, "misses": {"insert": 0}, "latency": {"Strong": 1.0}, "barrier_ms": 5},
    "enrol": {"lite": 100.0},
    "load": {("lite", 1000): 5000.0},
    "server_index": {1000: {"indexed": 1000, "total": 1000, "seconds": 3}, 2000: None},
    "index_mem": {1000: 2**21},
    "process": {1000: (10.0, 100.0)},
    "rebuild": {1000: 1.0},
    "size": {("lite", 1000): 2**20},
}
_ARGS = argparse.Namespace(queries=10, slow_queries=5)


def test_the_report_has_a_section_for_each_measurement() -> None:
    report = render(_OUT, _ARGS, 1.0)
    assert "| lite+memory | 1,000 | 1.00 | 2.00 | 1.000 | 1.000 | 3.0 | 0.10 |" in report
    for heading in (
        "## Gate screening",
        "## In-process index alone: exact scan",
        "## Consistency",
        "## Writes",
    ):
        assert heading in report
    assert report.count("| random | 1,000 | 1.0 | 10 | 5 |") == 1  # one memory row per data and size
    assert "1,000 rows: rows indexed / total" in report and "2,000 rows: rows" not in report  # none: no row
    assert report.endswith("MiB per 100k | 100 |\n")


def test_sections_without_measurements_are_left_out() -> None:
    report = render({**_OUT, "gate": [], "sketch": [], "consistency": None}, _ARGS, 1.0)
    for heading in ("## Gate screening", "## In-process index alone: exact scan", "## Consistency"):
        assert heading not in report
    assert "## In-process index alone (no gRPC), ms" in report and "## Writes" in report
