"""By-code checks of the rendered Kubernetes manifests (tests/deploy). Each check returns a list of
problems (empty = fine), so the same function proves the shipped manifests good and a known-bad
manifest bad (the negative tests mutate a rendered object and expect a named problem).

What "rendered" means: ``kubectl kustomize <dir>`` output, parsed into dicts (see conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from tools.config_docs import SETTINGS, env_names

Obj = dict[str, Any]

#: The five servers: (grpc port, metrics port, python module the container runs, settings marker).
SERVICES: dict[str, tuple[int, int, str]] = {
    "gateway": (50050, 9100, "gateway"),
    "detection": (50051, 9101, "services.detection"),
    "embedding": (50052, 9102, "services.embedding"),
    "watchlist": (50053, 9103, "services.watchlist"),
    "docverify": (50054, 9104, "services.docverify"),
}
#: FACEGATE_HEALTH_PORT in deploy/k8s/base/runtime.env: every server's plaintext health-only port.
HEALTH_PORT = 8086
#: FACEGATE_GATEWAY_PEER_PORT: where gateway replicas ask each other for referrals (gateway/peers.py).
GATEWAY_PEER_PORT = 50058
#: The officer console's HTTP port (FACEGATE_CONSOLE_PORT; it serves no gRPC and no metrics).
CONSOLE_PORT = 8080

#: Services whose start-up loads TensorFlow models: their startupProbe must allow this long.
MODEL_STARTUP_S = {"detection": 120, "embedding": 120}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
#: Secrets the production overlay expects to exist (created outside git; docs/kubernetes.md).
EXTERNAL_SECRETS = {"gateway-keys", "gateway-tls", "watchlist-milvus", "console-tls"}
#: Environment variables a container may set that no facegate settings class reads.
NON_SETTINGS_ENV = re.compile(r"^(OTEL_[A-Z0-9_]+|TF_CPP_MIN_LOG_LEVEL|PYTHON[A-Z]+)$")


def name_of(obj: Obj) -> str:
    return obj.get("metadata", {}).get("name", "")


def app_of(obj: Obj) -> str:
    """The app.kubernetes.io/name of a workload's pods."""
    return pod_labels(obj).get("app.kubernetes.io/name", "")


def workloads(objs: Iterable[Obj]) -> Iterator[Obj]:
    return (o for o in objs if o.get("kind") in WORKLOAD_KINDS)


def facegate_workloads(objs: Iterable[Obj]) -> Iterator[Obj]:
    return (o for o in workloads(objs) if app_of(o) in SERVICES)


def pod_spec(workload: Obj) -> Obj:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: Obj) -> dict[str, str]:
    return workload.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}) or {}


def by_kind(objs: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o.get("kind") == kind]


def find(objs: Iterable[Obj], kind: str, name: str) -> Obj:
    for o in objs:
        if o.get("kind") == kind and name_of(o) == name:
            return o
    raise KeyError(f"no {kind} {name}")


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def label_selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels and the In/NotIn/Exists/DoesNotExist expressions)."""
    if not matches(selector.get("matchLabels") or {}, labels):
        return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


# ---- workloads: probes, resources, security, image, grace -----------------------------------------


def _quantity(text: str | int | float) -> float:
    """A Kubernetes quantity as a float (cpu in cores, memory in bytes)."""
    units = {
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    if not m or (m.group(2) and m.group(2) not in units):
        raise ValueError(f"not a quantity: {text!r}")
    return float(m.group(1)) * units.get(m.group(2), 1)


def probe_budget_s(probe: Obj) -> float:
    """How long a probe tolerates failure before it gives up (initial delay + period x threshold)."""
    return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get(
        "failureThreshold", 3
    )


def grace_seconds(objs: list[Obj], workload: Obj) -> float:
    """FACEGATE_GRACE_SECONDS as the workload's containers get it (default of RuntimeSettings: 10)."""
    env = container_env(objs, pod_spec(workload)["containers"][0])
    return float(env.get("FACEGATE_GRACE_SECONDS", 10))


def check_workload(objs: list[Obj], w: Obj) -> list[str]:
    """Probes, resources, security context, image tag and termination grace of one workload."""
    problems: list[str] = []
    where = f"{w['kind']} {name_of(w)}"
    spec = pod_spec(w)
    psc = spec.get("securityContext") or {}
    app = app_of(w)
    for c in spec.get("initContainers", []) + spec["containers"]:
        cw = f"{where}/{c['name']}"
        init = c in spec.get("initContainers", [])
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
        if not tag or tag == "latest":
            problems.append(f"{cw}: image {image!r} has no pinned tag")
        if not init:
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind not in c:
                    problems.append(f"{cw}: no {kind}")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if what not in (res.get(part) or {}):
                    problems.append(f"{cw}: no {part}.{what}")
        for what in ("cpu", "memory"):
            req, lim = (res.get("requests") or {}).get(what), (res.get("limits") or {}).get(what)
            if req is not None and lim is not None and _quantity(req) > _quantity(lim):
                problems.append(f"{cw}: requests.{what} {req} above limits.{what} {lim}")
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            problems.append(f"{cw}: runAsNonRoot is not set")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            problems.append(f"{cw}: runs as uid 0")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cw}: root filesystem is writable")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cw}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{cw}: capabilities are not all dropped")
        if (sc.get("capabilities") or {}).get("add"):
            problems.append(f"{cw}: adds capabilities")
        if sc.get("privileged"):
            problems.append(f"{cw}: privileged")
    if app in SERVICES:
        problems += _check_facegate_server(objs, w)
    return problems


def _check_facegate_server(objs: list[Obj], w: Obj) -> list[str]:
    problems: list[str] = []
    app = app_of(w)
    grpc_port, metrics_port, module = SERVICES[app]
    where = f"{w['kind']} {name_of(w)}"
    spec = pod_spec(w)
    (c,) = [c for c in spec["containers"] if c["name"] == app]
    env = container_env(objs, c)
    if env.get("FACEGATE_HOST") != "0.0.0.0":
        problems.append(f"{where}: FACEGATE_HOST is {env.get('FACEGATE_HOST')!r}, not 0.0.0.0")
    if c.get("command") != ["python", "-m", module]:
        problems.append(f"{where}: command {c.get('command')} does not run {module}")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    expected = {"grpc": grpc_port, "metrics": metrics_port, "health": HEALTH_PORT}
    if app == "gateway":
        expected["peer"] = GATEWAY_PEER_PORT
        if env.get("FACEGATE_GATEWAY_PEER_PORT") != str(GATEWAY_PEER_PORT):
            problems.append(f"{where}: FACEGATE_GATEWAY_PEER_PORT is not the container's peer port")
    if ports != expected:
        problems.append(f"{where}: container ports {ports} are not {expected}")
    for setting, port in (
        (f"FACEGATE_{app.upper()}_PORT", grpc_port),
        (f"FACEGATE_{app.upper()}_METRICS_PORT", metrics_port),
        ("FACEGATE_HEALTH_PORT", HEALTH_PORT),
    ):
        if str(env.get(setting)) != str(port):
            problems.append(f"{where}: {setting}={env.get(setting)} but the container port is {port}")
    # Probes ask grpc.health.v1 on the plaintext health-only port: kubelet's gRPC probes cannot speak
    # TLS (the gateway's port, and every port under mutual TLS), and a TCP check would not see
    # warm-up or draining.
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c.get(kind) or {}
        grpc_probe = probe.get("grpc")
        if not grpc_probe or grpc_probe.get("port") != HEALTH_PORT or grpc_probe.get("service", ""):
            problems.append(f"{where}: {kind} does not ask grpc.health.v1 on the health port {HEALTH_PORT}")
    startup = c.get("startupProbe")
    if startup and probe_budget_s(startup) < MODEL_STARTUP_S.get(app, 30):
        problems.append(
            f"{where}: startupProbe allows {probe_budget_s(startup):.0f} s; model loading needs {MODEL_STARTUP_S.get(app, 30)} s"
        )
    pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
    term = spec.get("terminationGracePeriodSeconds", 30)
    if term <= grace_seconds(objs, w) + pre_stop:
        problems.append(
            f"{where}: terminationGracePeriodSeconds {term} is not longer than FACEGATE_GRACE_SECONDS "
            f"{grace_seconds(objs, w):g} + preStop {pre_stop}"
        )
    labels = pod_labels(w)
    if labels.get("facegate.io/model-version") in (None, ""):
        problems.append(f"{where}: pods carry no facegate.io/model-version label")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: mounts a service-account token it never uses")
    return problems


# ---- environment variables against the settings classes ----------------------------------------


def settings_env_names() -> dict[str, set[str]]:
    """{settings marker: every environment variable its class reads (aliases included)}."""
    out: dict[str, set[str]] = {}
    for s in SETTINGS:
        cls = s.load()
        out[s.name] = {n for name, field in cls.model_fields.items() for n in env_names(cls, name, field)}
    return out


def container_env(objs: list[Obj], container: Obj) -> dict[str, str]:
    """The variables a container gets: ConfigMaps from envFrom (as rendered), then env (values or refs)."""
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef") or src.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in src else "Secret"
        try:
            data = find(objs, kind, ref["name"]).get("data") or {}
        except KeyError:
            data = {}
        env.update({src.get("prefix", "") + k: str(v) for k, v in data.items()})
    for e in container.get("env", []):
        env[e["name"]] = str(e.get("value", "<from " + ",".join(e.get("valueFrom", {})) + ">"))
    return env


def check_env(objs: list[Obj], w: Obj, known: dict[str, set[str]]) -> list[str]:
    """Every variable a facegate container is given is one its settings class (or the runtime's) reads."""
    app = app_of(w)
    allowed = known["runtime"] | known[app]
    problems = []
    for c in pod_spec(w)["containers"]:
        for src in c.get("envFrom", []):
            ref = src.get("configMapRef") or src.get("secretRef")
            kind = "ConfigMap" if "configMapRef" in src else "Secret"
            if kind == "ConfigMap":
                try:
                    find(objs, kind, ref["name"])
                except KeyError:
                    problems.append(
                        f"{name_of(w)}: envFrom names ConfigMap {ref['name']}, which is not rendered"
                    )
        for var in container_env(objs, c):
            if var not in allowed and not NON_SETTINGS_ENV.match(var):
                problems.append(f"{name_of(w)}: {var} is set but no setting of {app} or the runtime reads it")
    return problems


# ---- selectors ---------------------------------------------------------------------------------------


def check_selectors(objs: list[Obj]) -> list[str]:
    """Workload selectors match their pod labels; Services, PDBs, PodMonitors and NetworkPolicies
    select at least one pod; HPAs point at a workload that exists."""
    problems = []
    pods = [(name_of(w), pod_labels(w), pod_spec(w)) for w in workloads(objs)]
    for w in workloads(objs):
        sel = w["spec"].get("selector") or {}
        if not sel or not label_selector_matches(sel, pod_labels(w)):
            problems.append(f"{w['kind']} {name_of(w)}: selector {sel} does not match its pod labels")
    for s in by_kind(objs, "Service"):
        sel = s["spec"].get("selector") or {}
        hits = [p for p in pods if sel and matches(sel, p[1])]
        if not hits:
            problems.append(f"Service {name_of(s)}: selector {sel} matches no pod")
        for port in s["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            for _, _, spec in hits:
                names = {
                    p.get("name"): p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])
                }
                if target not in names and target not in names.values():
                    problems.append(f"Service {name_of(s)}: targetPort {target} is no port of its pods")
    for kind in ("PodDisruptionBudget", "NetworkPolicy", "PodMonitor"):
        for o in by_kind(objs, kind):
            sel = o["spec"].get("selector") or o["spec"].get("podSelector") or {}
            if name_of(o) == "milvus" and kind == "NetworkPolicy":
                continue  # Milvus' pods are created by its operator, not rendered here
            if not any(label_selector_matches(sel, p[1]) for p in pods):
                problems.append(f"{kind} {name_of(o)}: selector {sel} matches no pod")
    for h in by_kind(objs, "HorizontalPodAutoscaler"):
        ref = h["spec"]["scaleTargetRef"]
        if not any(w["kind"] == ref["kind"] and name_of(w) == ref["name"] for w in workloads(objs)):
            problems.append(
                f"HorizontalPodAutoscaler {name_of(h)}: target {ref['kind']} {ref['name']} is not rendered"
            )
    for m in by_kind(objs, "PodMonitor"):
        for ep in m["spec"]["podMetricsEndpoints"]:
            for name, labels, spec in pods:
                if label_selector_matches(m["spec"]["selector"], labels):
                    ports = {p.get("name") for c in spec["containers"] for p in c.get("ports", [])}
                    if ep["port"] not in ports:
                        problems.append(f"PodMonitor {name_of(m)}: pod {name} has no port named {ep['port']}")
    return problems


MTLS_DIR = "/etc/facegate/mtls"
MTLS_ENV = {
    "FACEGATE_MTLS_CERT_FILE": f"{MTLS_DIR}/tls.crt",
    "FACEGATE_MTLS_KEY_FILE": f"{MTLS_DIR}/tls.key",
    "FACEGATE_MTLS_CA_FILE": f"{MTLS_DIR}/ca.crt",
}


def check_mtls(objs: list[Obj]) -> list[str]:
    """Mutual TLS between the services: every facegate server points FACEGATE_MTLS_* at its own
    mounted secret, which a cert-manager Certificate issues for its Service's DNS name (the name its
    callers dial), for both server and client auth, from an Issuer that is rendered too."""
    problems = []
    certs = {c["spec"]["secretName"]: c for c in by_kind(objs, "Certificate")}
    issuers = {name_of(i) for i in by_kind(objs, "Issuer")}
    for w in facegate_workloads(objs):
        app, where = app_of(w), f"{w['kind']} {name_of(w)}"
        spec = pod_spec(w)
        (c,) = [c for c in spec["containers"] if c["name"] == app]
        env = container_env(objs, c)
        if {k: env.get(k) for k in MTLS_ENV} != MTLS_ENV:
            problems.append(f"{where}: FACEGATE_MTLS_* do not point at {MTLS_DIR}")
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        secrets = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        mounted = [secrets[n] for n, path in mounts.items() if path == MTLS_DIR and n in secrets]
        if mounted != [f"{app}-mtls"]:
            problems.append(f"{where}: {MTLS_DIR} is not its own secret {app}-mtls (found {mounted})")
            continue
        cert = certs.get(f"{app}-mtls")
        if cert is None:
            problems.append(f"{where}: no Certificate issues {app}-mtls")
            continue
        if app not in cert["spec"].get("dnsNames", []):
            problems.append(f"Certificate {name_of(cert)}: dnsNames lack {app!r}, the name callers dial")
        if not {"server auth", "client auth"} <= set(cert["spec"].get("usages", [])):
            problems.append(f"Certificate {name_of(cert)}: not for both server and client auth")
        if cert["spec"]["issuerRef"]["name"] not in issuers:
            problems.append(
                f"Certificate {name_of(cert)}: issuer {cert['spec']['issuerRef']['name']} is not rendered"
            )
    return problems


def check_secrets(objs: list[Obj], external: set[str]) -> list[str]:
    """Every Secret a pod uses is rendered or is one of ``external``; ConfigMaps hold no secrets."""
    problems = []
    rendered = {name_of(s) for s in by_kind(objs, "Secret")}
    rendered |= {c["spec"]["secretName"] for c in by_kind(objs, "Certificate")}  # cert-manager writes these
    for w in workloads(objs):
        spec = pod_spec(w)
        used = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for c in spec["containers"]:
            used |= {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in c.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            used |= {s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s}
        for name in sorted(used - rendered - external):
            problems.append(
                f"{name_of(w)}: uses Secret {name}, which is neither rendered nor an expected external Secret"
            )
    for cm in by_kind(objs, "ConfigMap"):
        for key, value in (cm.get("data") or {}).items():
            hashes = re.search(r"\b[0-9a-f]{64}\b", str(value)) and "sha256" in str(value).lower()
            if re.search(r"(TOKEN|PASSWORD|SECRET)$", key, re.I) or "PRIVATE KEY" in str(value) or hashes:
                problems.append(f"ConfigMap {name_of(cm)}: {key} looks like a secret")
    return problems


# ---- NetworkPolicies: who can reach whom ----------------------------------------------------------

#: The designed call graph (README "Architecture"): caller -> callee.
CALL_GRAPH = {
    ("client", "gateway"),
    ("gateway", "docverify"),
    ("gateway", "watchlist"),
    ("gateway", "detection"),
    ("gateway", "embedding"),
    ("gateway", "redis"),
    ("docverify", "detection"),
    ("docverify", "embedding"),
    ("embedding", "redis"),
    ("watchlist", "milvus"),
    ("watchlist", "redis"),  # the change feed between replicas
    ("console", "gateway"),  # the officer console, a client like any other
}
#: Service ports of the parties that are not facegate servers.
STORE_PORTS = {"redis": 6379, "milvus": 19530}
MILVUS_LABELS = {"app.kubernetes.io/instance": "facegate-milvus", "app.kubernetes.io/name": "milvus"}


class Peer:
    """A party to a connection: its namespace (None = outside the cluster) and pod labels."""

    def __init__(self, name: str, namespace: str | None, labels: dict[str, str]) -> None:
        self.name, self.namespace, self.labels = name, namespace, labels

    def __repr__(self) -> str:
        return self.name


def _peer_matches(rule_peers: list[Obj] | None, peer: Peer, policy_ns: str) -> bool:
    if rule_peers is None:  # no from/to: everyone
        return True
    for p in rule_peers:
        if "ipBlock" in p:
            if peer.namespace is None and p["ipBlock"].get("cidr") in ("0.0.0.0/0", "::/0"):
                return True
            continue
        if peer.namespace is None:
            continue
        ns_sel, pod_sel = p.get("namespaceSelector"), p.get("podSelector")
        if ns_sel is None and peer.namespace != policy_ns:
            continue
        if ns_sel is not None and not label_selector_matches(
            ns_sel, {"kubernetes.io/metadata.name": peer.namespace}
        ):
            continue
        if pod_sel is not None and not label_selector_matches(pod_sel, peer.labels):
            continue
        return True
    return False


def _port_matches(rule_ports: list[Obj] | None, port: int, named: dict[str, int]) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        value = p.get("port")
        if value is None or value == port or named.get(value) == port:
            return True
    return False


def _allowed(
    policies: list[Obj], direction: str, subject: Peer, other: Peer, port: int, named: dict[str, int]
) -> bool:
    """Is the connection allowed for ``subject`` in ``direction`` (Ingress: other -> subject)?"""
    if subject.namespace is None:
        return True  # outside the cluster: no policy applies
    selecting = [
        p
        for p in policies
        if direction in p["spec"].get("policyTypes", ["Ingress"])
        and p["metadata"].get("namespace", subject.namespace) == subject.namespace
        and label_selector_matches(p["spec"]["podSelector"], subject.labels)
    ]
    if not selecting:
        return True  # not isolated
    key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for p in selecting:
        for rule in p["spec"].get(key) or []:
            if _peer_matches(rule.get(peers), other, subject.namespace) and _port_matches(
                rule.get("ports"), port, named
            ):
                return True
    return False


def reachable(objs: list[Obj], namespace: str) -> set[tuple[str, str, int]]:
    """Every (source, destination, port) the NetworkPolicies allow between the parties of the call graph,
    the monitoring namespace and a client outside the cluster (pods of one app among themselves:
    ``replica_reachable``)."""
    policies = by_kind(objs, "NetworkPolicy")
    peers: list[Peer] = [
        Peer("client", None, {}),
        Peer("monitoring", "monitoring", {"app.kubernetes.io/name": "prometheus"}),
    ]
    targets: list[tuple[Peer, list[int], dict[str, int]]] = []
    for w in facegate_workloads(objs):
        app = app_of(w)
        peer = Peer(app, namespace, pod_labels(w))
        peers.append(peer)
        named = {p["name"]: p["containerPort"] for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
        ports = [SERVICES[app][0], SERVICES[app][1], *([GATEWAY_PEER_PORT] if app == "gateway" else [])]
        targets.append((peer, ports, named))
    for w in [w for w in workloads(objs) if app_of(w) == "console"][:1]:
        peer = Peer("console", namespace, pod_labels(w))
        peers.append(peer)
        targets.append((peer, [CONSOLE_PORT], {}))
    redis = [w for w in workloads(objs) if app_of(w) == "redis"]
    for w in redis[:1]:
        peer = Peer("redis", namespace, pod_labels(w))
        peers.append(peer)
        targets.append((peer, [STORE_PORTS["redis"]], {}))
    milvus = Peer("milvus", namespace, MILVUS_LABELS)
    peers.append(milvus)
    targets.append((milvus, [STORE_PORTS["milvus"], 9091], {}))
    out = set()
    for src in peers:
        for dst, ports, named in targets:
            if src.name == dst.name:
                continue
            for port in ports:
                if _allowed(policies, "Egress", src, dst, port, {}) and _allowed(
                    policies, "Ingress", dst, src, port, named
                ):
                    out.add((src.name, dst.name, port))
    return out


def replica_reachable(objs: list[Obj], namespace: str, app: str, port: int) -> bool:
    """Whether one pod of ``app`` may open ``port`` on another pod of the same app."""
    policies = by_kind(objs, "NetworkPolicy")
    (workload,) = [w for w in facegate_workloads(objs) if app_of(w) == app]
    a, b = (
        Peer(f"{app}-0", namespace, pod_labels(workload)),
        Peer(f"{app}-1", namespace, pod_labels(workload)),
    )
    return _allowed(policies, "Egress", a, b, port, {}) and _allowed(policies, "Ingress", b, a, port, {})


#: Parties whose outbound traffic facegate's policies do not limit: the gateway's public port is
#: theirs too (it is the one port meant for everyone, behind API keys and TLS).
UNRESTRICTED = ("client", "monitoring", "milvus")


def expected_reachable(objs: list[Obj]) -> set[tuple[str, str, int]]:
    """The call graph on service ports, plus every metrics port from the monitoring namespace."""
    ports = {app: grpc for app, (grpc, _m, _mod) in SERVICES.items()} | STORE_PORTS
    out = {(src, dst, ports[dst]) for src, dst in CALL_GRAPH}
    out |= {(src, "gateway", ports["gateway"]) for src in UNRESTRICTED}
    out |= {(src, "console", CONSOLE_PORT) for src in UNRESTRICTED}  # officers' browsers, via the Ingress
    apps = {app_of(w) for w in facegate_workloads(objs)}
    out |= {("monitoring", app, SERVICES[app][1]) for app in apps}
    out.add(("monitoring", "milvus", 9091))
    return out
