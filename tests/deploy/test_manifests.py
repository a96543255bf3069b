"""The Kubernetes manifests: they render, every object passes its schema, and the by-code rules hold
(probes, resources, security context, image tags, grace periods, env vars, selectors, Secrets, GPU).
Each rule also has a negative test: a known-bad object fails it with a named problem."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from facegate.thresholds import CALIBRATION_DIR
from services.runtime.model_spec import BY_RUNTIME, FACENET, FACENET_INT8
from tests.deploy import checks
from tests.deploy.conftest import K8S, REPO, kustomizations, kustomize, node_modules

#: The oldest and newest Kubernetes versions kubernetes-validate bundles schemas for.
K8S_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())
K8S_VERSION = K8S_VERSIONS[0]
#: Kinds kubernetes-validate has no schema for; each is validated another way below.
CUSTOM_KINDS = {"Certificate", "Issuer", "Milvus", "PodMonitor", "PrometheusRule", "ServiceMonitor"}
MILVUS_SCHEMA = K8S / "schemas" / "milvus.io_v1beta1_milvus.schema.json"
VALIDATE_MODELS = Path(__file__).with_name("validate_models.mjs")


def k8s_problems(obj: dict, version: str = K8S_VERSION) -> list[str]:
    """kubernetes-validate --strict on one object; a missing schema counts as a problem."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        if obj.get("kind") in CUSTOM_KINDS:
            return []
        return [f"{obj.get('kind')} {checks.name_of(obj)}: no schema for {obj.get('apiVersion')}"]
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        return [f"{obj.get('kind')} {checks.name_of(obj)}: {path}: {exc.message}"]
    return []


def milvus_problems(obj: dict) -> list[str]:
    schema = json.loads(MILVUS_SCHEMA.read_text())
    return [
        f"Milvus {checks.name_of(obj)}: {'/'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(obj)
    ]


def models_problems(objs: list[dict]) -> list[dict]:
    """Results of the npm kubernetes-models validators (tests/deploy/validate_models.mjs)."""
    modules = node_modules()
    done = subprocess.run(
        ["node", str(VALIDATE_MODELS)],
        input=json.dumps(objs),
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "FACEGATE_NODE_MODULES": str(modules)},
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# ---- rendering --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", kustomizations(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_kustomization_renders(path: Path) -> None:
    objs = kustomize(path)
    assert objs, f"{path} renders nothing"
    for o in objs:
        assert o.get("apiVersion") and o.get("kind") and checks.name_of(o), (
            f"incomplete object in {path}: {o}"
        )


def test_overlays_hold_what_the_issue_asks_for(rendered) -> None:
    for overlay, objs in rendered.items():
        names = {(o["kind"], checks.name_of(o)) for o in objs}
        for app in checks.SERVICES:
            kind = "StatefulSet" if app == "gateway" else "Deployment"
            for expected in ((kind, app), ("Service", app), ("ServiceAccount", app)):
                assert expected in names, f"{overlay}: {expected} missing"
            assert any(k == "ConfigMap" and n.startswith(f"{app}-config") for k, n in names), (
                f"{overlay}: {app} ConfigMap"
            )
        assert ("Milvus", "facegate-milvus") in names
        assert ("PodMonitor", "facegate") in names and ("PrometheusRule", "facegate") in names
        assert ("ConfigMap", "facegate-dashboard") in names
    prod = {(o["kind"], checks.name_of(o)) for o in rendered["production"]}
    for app in checks.SERVICES:
        assert ("HorizontalPodAutoscaler", app) in prod and ("PodDisruptionBudget", app) in prod
    assert ("StatefulSet", "redis") in prod, "production Redis is replicated (Sentinel)"
    milvus = {o["spec"]["mode"] for o in rendered["production"] if o["kind"] == "Milvus"}
    assert milvus == {"cluster"}
    assert {o["spec"]["mode"] for o in rendered["dev"] if o["kind"] == "Milvus"} == {"standalone"}
    for w in checks.workloads(rendered["dev"]):
        assert w["spec"].get("replicas", 1) == 1, f"dev runs one replica of {checks.name_of(w)}"


# ---- schemas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_passes_kubernetes_validate_strict(all_objects, version) -> None:
    problems = [f"{overlay}: {p}" for overlay, obj in all_objects for p in k8s_problems(obj, version)]
    assert not problems, "\n".join(problems)


def test_kubernetes_validate_rejects_known_bad_objects(rendered) -> None:
    deployment = copy.deepcopy(checks.find(rendered["dev"], "Deployment", "detection"))
    deployment["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    assert any("resourcez" in p for p in k8s_problems(deployment))
    service = copy.deepcopy(checks.find(rendered["dev"], "Service", "detection"))
    service["spec"]["ports"][0]["port"] = "fifty"
    assert k8s_problems(service)
    policy = copy.deepcopy(checks.find(rendered["dev"], "NetworkPolicy", "detection"))
    del policy["spec"]["podSelector"]
    assert k8s_problems(policy)
    assert k8s_problems({"apiVersion": "example.org/v1", "kind": "Unknown", "metadata": {"name": "x"}})


def test_milvus_resources_match_the_operator_schema(all_objects) -> None:
    milvus = [(overlay, o) for overlay, o in all_objects if o["kind"] == "Milvus"]
    assert len(milvus) == 2
    for overlay, obj in milvus:
        assert not milvus_problems(obj), f"{overlay}: {milvus_problems(obj)}"
        assert obj["spec"]["config"]["common"]["security"]["authorizationEnabled"] is True, (
            "the token must be required"
        )


def test_milvus_schema_rejects_known_bad_resources(rendered) -> None:
    good = checks.find(rendered["production"], "Milvus", "facegate-milvus")
    for mutate, expect in (
        (lambda m: m["spec"].__setitem__("mode", "distributed"), "mode"),
        (lambda m: m["spec"]["components"]["queryNode"].__setitem__("replica", 2), "replica"),
        (lambda m: m["spec"]["dependencies"].__setitem__("msgStreamType", "zeromq"), "msgStreamType"),
        (lambda m: m["spec"]["components"].__setitem__("image", "milvusdb/milvus"), "image"),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        assert any(expect in p for p in milvus_problems(bad)), f"{expect}: {milvus_problems(bad)}"


def test_objects_pass_the_kubernetes_models_validators(all_objects) -> None:
    """npm kubernetes-models (quantities too) and @kubernetes-models/prometheus-operator (PodMonitor,
    PrometheusRule): kinds the first tool skips are the ones checked here."""
    objs = [o for _, o in all_objects]
    results = models_problems(objs)
    assert len(results) == len(objs)
    failed = [f"{r['kind']} {r['name']}: {r['error']}" for r in results if not r["ok"]]
    assert not failed, "\n".join(failed)
    checked = {r["kind"] for r in results if not r.get("skipped")}
    assert {"PodMonitor", "PrometheusRule", "Certificate", "Issuer", "Deployment", "StatefulSet"} <= checked


def test_kubernetes_models_reject_known_bad_objects(rendered) -> None:
    deployment = copy.deepcopy(checks.find(rendered["dev"], "Deployment", "detection"))
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "2 gigs"
    monitor = copy.deepcopy(checks.find(rendered["dev"], "PodMonitor", "facegate"))
    monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "fifteen seconds"
    rule = copy.deepcopy(checks.find(rendered["dev"], "PrometheusRule", "facegate"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = 10
    cert = copy.deepcopy(checks.find(rendered["production"], "Certificate", "gateway-mtls"))
    cert["spec"]["privateKey"]["algorithm"] = "DSA"
    results = models_problems([deployment, monitor, rule, cert])
    assert [r["ok"] for r in results] == [False, False, False, False], results


# ---- by code --------------------------------------------------------------------------------------------


def test_every_workload_has_probes_resources_security_and_a_pinned_image(rendered) -> None:
    problems = [
        f"{overlay}: {p}"
        for overlay, objs in rendered.items()
        for w in checks.workloads(objs)
        for p in checks.check_workload(objs, w)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda c, s: c.pop("readinessProbe"), "no readinessProbe"),
        (lambda c, s: c.pop("startupProbe"), "no startupProbe"),
        (lambda c, s: c["startupProbe"].__setitem__("failureThreshold", 3), "startupProbe allows"),
        (
            lambda c, s: c["livenessProbe"].__setitem__("grpc", {"port": 50051}),
            "grpc.health.v1 on the health port",
        ),
        (
            lambda c, s: c.__setitem__("readinessProbe", {"tcpSocket": {"port": 8086}}),
            "grpc.health.v1 on the health",
        ),
        (lambda c, s: c["ports"].pop(), "container ports"),
        (lambda c, s: c["resources"].pop("limits"), "no limits.memory"),
        (lambda c, s: c["resources"]["requests"].__setitem__("memory", "8Gi"), "above limits.memory"),
        (lambda c, s: c["securityContext"].__setitem__("readOnlyRootFilesystem", False), "writable"),
        (
            lambda c, s: c["securityContext"]["capabilities"].__setitem__("drop", ["NET_RAW"]),
            "not all dropped",
        ),
        (
            lambda c, s: (c["securityContext"].pop("runAsNonRoot"), s["securityContext"].pop("runAsNonRoot")),
            "runAsNonRoot",
        ),
        (lambda c, s: c.__setitem__("image", "facegate/detection"), "no pinned tag"),
        (lambda c, s: c.__setitem__("image", "facegate/detection:latest"), "no pinned tag"),
        (lambda c, s: s.__setitem__("terminationGracePeriodSeconds", 12), "terminationGracePeriodSeconds"),
        (lambda c, s: c.__setitem__("command", ["python", "-m", "services.embedding"]), "does not run"),
    ],
)
def test_workload_check_catches_a_bad_deployment(rendered, mutate, expect) -> None:
    objs = copy.deepcopy(rendered["dev"])
    w = checks.find(objs, "Deployment", "detection")
    spec = checks.pod_spec(w)
    mutate(spec["containers"][0], spec)
    problems = checks.check_workload(objs, w)
    assert any(expect in p for p in problems), problems


def test_gateway_probes_see_health_through_tls(rendered) -> None:
    """kubelet's gRPC probes are plaintext, the production gateway's port is TLS: its probes still ask
    grpc.health.v1, on the plaintext health-only port, rather than falling back to a TCP check."""
    prod_objs = rendered["production"]
    prod = checks.pod_spec(checks.find(prod_objs, "StatefulSet", "gateway"))["containers"][0]
    env = checks.container_env(prod_objs, prod)
    assert env["FACEGATE_GATEWAY_TLS_CERT_FILE"].startswith("/etc/facegate/tls/")
    assert "FACEGATE_GATEWAY_ALLOW_PLAINTEXT" not in env
    assert env["FACEGATE_HEALTH_PORT"] == str(checks.HEALTH_PORT)
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert prod[kind]["grpc"] == {"port": checks.HEALTH_PORT}, kind


def test_production_services_speak_mutual_tls_to_each_other(rendered) -> None:
    assert not checks.check_mtls(rendered["production"])
    dev = checks.check_mtls(rendered["dev"])  # dev stays plaintext (loopback or a protected network)
    assert any("FACEGATE_MTLS_*" in p for p in dev)


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda objs: checks.find(objs, "Certificate", "docverify-mtls")["spec"]["dnsNames"].pop(0), "lack"),
        (
            lambda objs: checks.find(objs, "Certificate", "detection-mtls")["spec"]["usages"].pop(),
            "client auth",
        ),
        (lambda objs: objs.remove(checks.find(objs, "Certificate", "embedding-mtls")), "no Certificate"),
        (lambda objs: objs.remove(checks.find(objs, "Issuer", "facegate-internal")), "is not rendered"),
        (
            lambda objs: next(
                v
                for v in checks.pod_spec(checks.find(objs, "Deployment", "watchlist"))["volumes"]
                if v["name"] == "mtls"
            )["secret"].__setitem__("secretName", "gateway-mtls"),
            "its own secret",
        ),
    ],
)
def test_mtls_check_catches_mistakes(rendered, mutate, expect) -> None:
    objs = copy.deepcopy(rendered["production"])
    mutate(objs)
    assert any(expect in p for p in checks.check_mtls(objs)), checks.check_mtls(objs)


def test_every_env_var_is_a_setting_of_its_service(rendered) -> None:
    known = checks.settings_env_names()
    problems = [
        f"{overlay}: {p}"
        for overlay, objs in rendered.items()
        for w in checks.facegate_workloads(objs)
        for p in checks.check_env(objs, w, known)
    ]
    assert not problems, "\n".join(problems)
    # the aliases count: the watchlist gets MILVUS_URI/MILVUS_TOKEN from its Secret
    watchlist = checks.find(rendered["production"], "Deployment", "watchlist")
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in checks.pod_spec(watchlist)["containers"][0]["env"]
    }
    assert refs == {"MILVUS_URI": "watchlist-milvus", "MILVUS_TOKEN": "watchlist-milvus"}


def test_env_check_catches_a_misspelt_variable(rendered) -> None:
    objs = copy.deepcopy(rendered["dev"])
    config = next(
        o for o in objs if o["kind"] == "ConfigMap" and checks.name_of(o).startswith("embedding-config")
    )
    config["data"]["FACEGATE_EMBEDDING_MAX_BATCHES"] = "32"
    config["data"]["FACEGATE_DETECTION_DEVICE"] = "CPU:0"  # another service's setting
    problems = checks.check_env(
        objs, checks.find(objs, "Deployment", "embedding"), checks.settings_env_names()
    )
    assert any("MAX_BATCHES" in p for p in problems) and any(
        "FACEGATE_DETECTION_DEVICE" in p for p in problems
    )


def test_selectors_match_pod_labels(rendered) -> None:
    problems = [f"{overlay}: {p}" for overlay, objs in rendered.items() for p in checks.check_selectors(objs)]
    assert not problems, "\n".join(problems)


def test_selector_check_catches_mismatches(rendered) -> None:
    objs = copy.deepcopy(rendered["production"])
    checks.find(objs, "Service", "docverify")["spec"]["selector"] = {"app.kubernetes.io/name": "docverfy"}
    checks.find(objs, "Deployment", "watchlist")["spec"]["selector"]["matchLabels"]["tier"] = "search"
    checks.find(objs, "HorizontalPodAutoscaler", "embedding")["spec"]["scaleTargetRef"]["name"] = "embeddings"
    checks.find(objs, "PodDisruptionBudget", "detection")["spec"]["selector"]["matchLabels"] = {
        "app": "detection"
    }
    problems = "\n".join(checks.check_selectors(objs))
    for expect in (
        "Service docverify",
        "Deployment watchlist",
        "HorizontalPodAutoscaler embedding",
        "PodDisruptionBudget detection",
    ):
        assert expect in problems, problems


def test_secrets_stay_out_of_configmaps_and_images(rendered) -> None:
    assert not checks.check_secrets(rendered["dev"], external=set())
    assert not checks.check_secrets(rendered["production"], external=checks.EXTERNAL_SECRETS)
    gateway = checks.pod_spec(checks.find(rendered["production"], "StatefulSet", "gateway"))
    secrets = {v["name"]: v["secret"]["secretName"] for v in gateway["volumes"] if "secret" in v}
    assert secrets == {"keys": "gateway-keys", "tls": "gateway-tls", "mtls": "gateway-mtls"}
    mounts = {m["name"]: m for m in gateway["containers"][0]["volumeMounts"]}
    assert "subPath" not in mounts["keys"], "a subPath mount would never see a revoked key"
    dockerfiles = "".join(p.read_text() for p in (REPO / "deploy" / "docker").glob("*.Dockerfile"))
    assert "keys.json" not in dockerfiles and ".pem" not in dockerfiles


def test_secret_check_catches_a_leak(rendered) -> None:
    objs = copy.deepcopy(rendered["dev"])
    config = next(
        o for o in objs if o["kind"] == "ConfigMap" and checks.name_of(o).startswith("watchlist-config")
    )
    config["data"]["MILVUS_TOKEN"] = "root:Milvus"
    assert any("MILVUS_TOKEN" in p for p in checks.check_secrets(objs, external=set()))
    assert any("gateway-tls" in p for p in checks.check_secrets(rendered["production"], external=set()))


def test_model_version_is_the_embedding_runtimes_and_shown_on_every_pod(rendered) -> None:
    """The watchlist's templates must be of the model the embedding serves, or every screening refers."""
    served = {}
    for name, objs in rendered.items():
        embedding = checks.find(objs, "Deployment", "embedding")
        env = checks.container_env(objs, checks.pod_spec(embedding)["containers"][0])
        spec = BY_RUNTIME[env["FACEGATE_EMBEDDING_RUNTIME"]]  # pinned, never "auto"
        served[name] = spec.model_version
        for w in checks.facegate_workloads(objs):
            labels = checks.pod_labels(w)
            annotations = (
                w["spec"]["template"]["metadata"].get("annotations") or w["metadata"].get("annotations") or {}
            )
            assert labels["facegate.io/model-version"] == spec.model_version[:12]
            assert annotations.get("facegate.io/model-version-sha256") == spec.model_version
        watchlist = checks.find(objs, "Deployment", "watchlist")
        env = checks.container_env(objs, checks.pod_spec(watchlist)["containers"][0])
        assert env["FACEGATE_WATCHLIST_MODEL_VERSION"] == spec.model_version
    # CPUs serve int8 FaceNet, the production GPUs float32: both calibrated
    assert served["dev"] == FACENET_INT8.model_version and served["production"] == FACENET.model_version
    for version in served.values():
        assert (CALIBRATION_DIR / f"{version}.json").exists()
        assert (CALIBRATION_DIR / f"{version}.sources.json").exists()


def test_production_embedding_runs_on_gpu_nodes(rendered) -> None:
    objs = rendered["production"]
    w = checks.find(objs, "Deployment", "embedding")
    spec = checks.pod_spec(w)
    c = spec["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["image"].endswith(":0.1.0-gpu")
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert checks.container_env(objs, c)["FACEGATE_EMBEDDING_DEVICE"] == "gpu"
    dev = checks.pod_spec(checks.find(rendered["dev"], "Deployment", "embedding"))
    assert "nvidia.com/gpu" not in dev["containers"][0]["resources"]["limits"] and "nodeSelector" not in dev


def test_model_files_come_from_the_image_not_a_download(rendered) -> None:
    for objs in rendered.values():
        embedding = checks.find(objs, "Deployment", "embedding")
        c = checks.pod_spec(embedding)["containers"][0]
        env = checks.container_env(objs, c)
        assert env["FACEGATE_EMBEDDING_MODELS_DIR"] == "/opt/facegate/models"
        assert not any(m["mountPath"].startswith("/opt/facegate/models") for m in c.get("volumeMounts", []))
        text = yaml.safe_dump(embedding)
        assert "model_setup" not in text and "pip download" not in text


#: Stand-ins for values a container gets from a Secret (secretKeyRef) when its settings are loaded.
SECRET_STAND_INS = {"MILVUS_URI": "http://facegate-milvus-milvus:19530", "MILVUS_TOKEN": "facegate:stand-in"}


def _load_as_container(monkeypatch, env: dict[str, str], app: str):
    """Load the runtime's and ``app``'s settings classes from exactly ``env`` (what the container gets)."""
    import os

    from services.runtime.config import RuntimeSettings, load_settings
    from tools.config_docs import SETTINGS

    for var in list(os.environ):
        if var.startswith("FACEGATE_") or var in ("REDIS_URL", "MILVUS_URI", "MILVUS_TOKEN"):
            monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, SECRET_STAND_INS.get(var, value) if value.startswith("<from") else value)
    (settings,) = [s for s in SETTINGS if s.name == app]
    return load_settings(RuntimeSettings), load_settings(settings.load())


def test_every_service_accepts_its_rendered_configuration(rendered, monkeypatch) -> None:
    """Not only the names: the values parse too (a JSON index parameter, a device name, a port), the
    way the server validates them at start (a wrong one would stop the pod with exit code 2)."""
    for overlay, objs in rendered.items():
        for w in checks.facegate_workloads(objs):
            app = checks.app_of(w)
            env = checks.container_env(objs, checks.pod_spec(w)["containers"][0])
            with monkeypatch.context() as m:
                runtime, settings = _load_as_container(m, env, app)
            assert runtime.host == "0.0.0.0", overlay
            assert (settings.port, settings.metrics_port) == checks.SERVICES[app][:2], f"{overlay}: {app}"


def test_a_value_the_service_would_refuse_is_caught(rendered, monkeypatch) -> None:
    from services.runtime.config import ConfigError

    objs = copy.deepcopy(rendered["dev"])
    config = next(
        o for o in objs if o["kind"] == "ConfigMap" and checks.name_of(o).startswith("watchlist-config")
    )
    config["data"]["FACEGATE_WATCHLIST_SEARCH_MODE"] = "fast"
    env = checks.container_env(
        objs, checks.pod_spec(checks.find(objs, "Deployment", "watchlist"))["containers"][0]
    )
    with monkeypatch.context() as m, pytest.raises(ConfigError) as caught:
        _load_as_container(m, env, "watchlist")
    assert "FACEGATE_WATCHLIST_SEARCH_MODE" in str(caught.value)
