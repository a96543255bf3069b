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


def test_the_noop_server_answers_with_the_asked_size() -> None:
    from facegate.client import open_channel
    from facegate.v1 import common_pb2, detection_pb2, detection_pb2_grpc

    with noop_server() as target:
        stub = detection_pb2_grpc.DetectionServiceStub(open_channel(target))
        request = detection_pb2.DetectRequest(image=common_pb2.Image(data=bytes(1000)))
        reply = stub.Detect(request, metadata=((REPLY_BYTES_HEADER, "4321"),), timeout=10)
        assert len(reply.faces[0].aligned.rgb) == 4321


def test_floor_measures_every_hop_and_sums_them() -> None:
    result = floor(decision_hops(2_000, 1_000, 1_500), calls=3, gap_s=0.001)
    assert [r["hop"] for r in result["rows"]] == [h.label for h in decision_hops(2_000, 1_000, 1_500)]
    assert all(r["p50"] > 0 and r["mean"] > 0 for r in result["rows"])
    assert result["total_p50"] == pytest.approx(sum(r["p50"] for r in result["rows"]))
    assert result["rows"][2]["reply_kb"] == pytest.approx(2 * (CROP_BYTES + 300) / 1000)
