"""The transport-floor bench against a real no-op server in its own process (runtime bootstrap,
client layer): every hop is measured, replies have the asked size, the floor is their sum."""

from __future__ import annotations

import pytest

from bench.hop_floor import CROP_BYTES, REPLY_BYTES_HEADER, decision_hops, floor, noop_server


def test_a_decision_has_five_hops_with_its_sizes() -> None:
    hops = decision_hops(live_bytes=50_000, portrait_bytes=10_000, dg2_bytes=12_000)
    assert len(hops) == 5
    detect = hops[2]
    assert detect.calls == ((50_000, CROP_BYTES + 300), (10_000, CROP_BYTES + 300))  # at once
    assert hops[3].calls[0][0] == 2 * CROP_BYTES + 100  # both crops to embedding
    assert hops[0].calls[0][0] == 50_000 + 12_000 + 300


@pytest.mark.parametrize("bare", [False, True], ids=["runtime", "bare"])
def test_the_noop_server_answers_with_the_asked_size(bare: bool) -> None:
    from facegate.client import open_channel
    from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc

    with noop_server(bare=bare) as target:
        stub = detection_pb2_grpc.DetectionServiceStub(open_channel(target))
        request = detection_pb2.DetectRequest(image=common_pb2.Image(data=bytes(1000)))
        reply = stub.Detect(request, metadata=((REPLY_BYTES_HEADER, "4321"),), timeout=10)
        assert len(reply.faces[0].aligned.rgb) == 4321


def test_floor_measures_every_hop_and_sums_them() -> None:
    result = floor(decision_hops(2_000, 1_000, 1_500), calls=3, gap_s=0.001)
    assert [r["hop"] for r in result["rows"]] == [h.label for h in decision_hops(2_000, 1_000, 1_500)]
    assert all(r["p50"] > 0 and r["mean"] > 0 for r in result["rows"])
    assert all(r["p50_bare"] > 0 and r["p50_busy"] > 0 for r in result["rows"])
    assert result["total_p50"] == pytest.approx(sum(r["p50"] for r in result["rows"]))
    assert result["total_bare"] == pytest.approx(sum(r["p50_bare"] for r in result["rows"]))
    assert result["total_busy"] == pytest.approx(sum(r["p50_busy"] for r in result["rows"]))
    assert result["rows"][2]["reply_kb"] == pytest.approx(2 * (CROP_BYTES + 300) / 1000)


def test_the_report_splits_the_floor_into_grpc_layers_and_idle() -> None:
    from bench.hop_floor import render

    row = {"hop": "a -> b", "request_kb": 1.0, "reply_kb": 2.0, "p50": 1.5, "mean": 1.6, "p50_bare": 1.2}
    result = {"rows": [row | {"p50_busy": 0.8}], "total_p50": 9.0, "total_bare": 7.5, "total_busy": 4.0}
    text = "\n".join(render(result | {"gap_ms": 30.0, "calls": 10}, decision_ms=90.0))
    assert "| a -> b | 1.0 | 2.0 | 1.50 | 1.60 | 1.20 | 0.80 |" in text
    assert "costs 7.5 ms for the five hops" in text
    assert "add 1.5 ms" in text and "5.0 ms is the price of the callee idling 30 ms" in text
    assert "10% of this run's mean decision (90.0 ms)" in text
