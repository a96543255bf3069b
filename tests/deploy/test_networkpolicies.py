"""NetworkPolicies allow exactly the designed call graph (README "Architecture"), evaluated by code:
for every pair of parties (a client outside the cluster, the monitoring namespace, the five servers,
Redis, Milvus) and every port they serve, both the caller's egress and the callee's ingress
policies are applied; the set of allowed connections must equal the call graph plus metrics scrapes."""

from __future__ import annotations

import copy

import pytest

from tests.deploy import checks


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_policies_allow_exactly_the_call_graph(rendered, overlay) -> None:
    objs = rendered[overlay]
    namespace = next(o["metadata"]["name"] for o in objs if o["kind"] == "Namespace")
    allowed = checks.reachable(objs, namespace)
    expected = checks.expected_reachable(objs)
    assert allowed - expected == set(), f"allowed beyond the call graph: {sorted(allowed - expected)}"
    assert expected - allowed == set(), f"call graph edges the policies block: {sorted(expected - allowed)}"


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_gateway_replicas_reach_each_others_peer_port_and_no_one_else_does(rendered, overlay) -> None:
    objs = rendered[overlay]
    namespace = next(o["metadata"]["name"] for o in objs if o["kind"] == "Namespace")
    assert checks.replica_reachable(objs, namespace, "gateway", checks.GATEWAY_PEER_PORT)
    assert not checks.replica_reachable(objs, namespace, "detection", checks.SERVICES["detection"][0])
    others = {src for src, dst, port in checks.reachable(objs, namespace) if port == checks.GATEWAY_PEER_PORT}
    assert others == set()  # not the kiosks, not the other services, not monitoring


def test_only_the_watchlist_reaches_milvus_and_only_gateway_is_public(rendered) -> None:
    objs = rendered["production"]
    allowed = checks.reachable(objs, "facegate")
    assert {src for src, dst, port in allowed if dst == "milvus" and port == 19530} == {"watchlist"}
    assert {(dst, port) for src, dst, port in allowed if src == "client"} == {
        ("gateway", 50050),
        ("console", 8080),
    }
    assert {(dst, port) for src, dst, port in allowed if src == "console"} == {("gateway", 50050)}

    def callers_of(app: str) -> set[str]:
        return {src for src, dst, _ in allowed if dst == app and src not in checks.UNRESTRICTED}

    assert callers_of("detection") == callers_of("embedding") == {"gateway", "docverify"}
    assert callers_of("redis") == {"gateway", "embedding", "watchlist"}
    assert {(dst, port) for src, dst, port in allowed if src == "monitoring"} == {
        *((app, ports[1]) for app, ports in checks.SERVICES.items()),
        ("milvus", 9091),
        ("gateway", 50050),  # the public port
        ("console", 8080),  # the console's, too
    }


@pytest.mark.parametrize(
    ("policy", "mutate", "leak"),
    [
        # detection accepts anyone: a client outside the cluster reaches it
        ("detection", lambda p: p["spec"]["ingress"][0].pop("from"), ("client", "detection", 50051)),
        # a metrics rule without a namespace selector: clients scrape the gateway
        ("gateway", lambda p: p["spec"]["ingress"][1].pop("from"), ("client", "gateway", 9100)),
        # the peer rule without its pod selector: clients reach the replicas' peer port
        ("gateway", lambda p: p["spec"]["ingress"][2].pop("from"), ("client", "gateway", 50058)),
        # docverify may call anything, and watchlist lets it in
        (
            "watchlist",
            lambda p: p["spec"]["ingress"][0]["from"].append(
                {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "docverify"}}}
            ),
            None,
        ),
    ],
)
def test_a_loosened_policy_is_caught(rendered, policy, mutate, leak) -> None:
    objs = copy.deepcopy(rendered["production"])
    mutate(checks.find(objs, "NetworkPolicy", policy))
    allowed = checks.reachable(objs, "facegate")
    if leak is not None:
        assert leak in allowed
    assert allowed != checks.expected_reachable(objs) or leak is None


def test_a_missing_rule_is_caught(rendered) -> None:
    objs = copy.deepcopy(rendered["production"])
    embedding = checks.find(objs, "NetworkPolicy", "embedding")
    embedding["spec"]["egress"] = [r for r in embedding["spec"]["egress"] if "redis" not in str(r)]
    missing = checks.expected_reachable(objs) - checks.reachable(objs, "facegate")
    assert missing == {("embedding", "redis", 6379)}
