"""The deployed Milvus searches not-yet-indexed rows as the tests and benchmarks' server does.

tests/watchlist/milvus_server.py's SERVER_CONFIG is what the watchlist's server-path tests (among
them test_server_fresh_recall: a template enrolled a moment ago is found) ran against; both Milvus
resources must carry the same interim-index settings, with nprobe covering every list.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.watchlist.milvus_server import SERVER_CONFIG

MILVUS = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "milvus"


@pytest.mark.parametrize("mode", ["standalone", "cluster"])
def test_milvus_resource_carries_the_tested_server_settings(mode: str) -> None:
    config = yaml.safe_load((MILVUS / mode / "milvus.yaml").read_text())["spec"]["config"]
    for key, value in SERVER_CONFIG.items():
        node = config
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{mode}: spec.config.{key} is not set"
            node = node[part]
        assert str(node).lower() == value, f"{mode}: spec.config.{key} is {node}, the tests ran with {value}"
    interim = config["queryNode"]["segcore"]["interimIndex"]
    assert interim.get("enableIndex", True) is False or interim["nprobe"] >= interim["nlist"], (
        f"{mode}: the interim index would skip lists (nprobe {interim['nprobe']} < nlist {interim['nlist']})"
    )
