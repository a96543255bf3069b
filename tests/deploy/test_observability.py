"""Alerts, dashboard and the metrics they use.

* promtool: the PrometheusRule's groups pass `promtool check rules`, and `promtool test rules` with
  deploy/k8s/tests/alerts.test.yaml fires every alert on a synthetic series (and not on a healthy one);
* every alert carries a summary, a description and a runbook link to a heading in docs/kubernetes.md;
* the Grafana dashboard type-checks against @grafana/schema's Dashboard (tsc --strict);
* every metric an alert or a panel uses is one the code exports: a real server is started through
  the runtime with the service metrics modules loaded, and its /metrics endpoint is scraped (no
  second list to keep in sync). Label names in selectors are checked against the exported metric.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import K8S, REPO, node_modules, require_tool

RULES = K8S / "base" / "monitoring" / "prometheusrule.yaml"
RULE_TESTS = K8S / "tests" / "alerts.test.yaml"
DASHBOARD = K8S / "base" / "monitoring" / "dashboards" / "facegate.json"
RUNBOOK = REPO / "docs" / "kubernetes.md"
#: Series Prometheus makes itself, not the code.
PROMETHEUS_OWN = {"up"}
#: Labels Prometheus adds to every scraped series (the PodMonitor's target labels).
TARGET_LABELS = {"namespace", "pod", "job", "instance", "app", "model_version", "container", "endpoint"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
}


def promtool() -> str:
    return require_tool("promtool", "apt-get install -y --no-install-recommends prometheus")


def rule_groups(strip_annotations: bool) -> list[dict]:
    groups = copy.deepcopy(yaml.safe_load(RULES.read_text())["spec"]["groups"])
    if strip_annotations:
        for group in groups:
            for rule in group["rules"]:
                rule.pop("annotations", None)
    return groups


def alerts() -> list[dict]:
    return [r for g in rule_groups(False) for r in g["rules"] if "alert" in r]


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


# ---- promtool ----------------------------------------------------------------------------------------


def test_rules_pass_promtool_check(tmp_path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(False)}))
    done = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(alerts())} rules found" in done.stdout


def test_every_alert_fires_in_promtool_unit_tests(tmp_path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(True)}))
    shutil.copy(RULE_TESTS, tmp_path / "alerts.test.yaml")
    done = run_promtool("test", "rules", "alerts.test.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), f"alerts no unit test fires: {sorted(names - fired)}"
    assert names - quiet == set(), f"alerts no unit test keeps quiet: {sorted(names - quiet)}"


def test_promtool_rejects_a_broken_rule_and_a_wrong_expectation(tmp_path) -> None:
    groups = rule_groups(True)
    groups[0]["rules"][0]["expr"] = "sum by (service) (rate(facegate_rpc_requests_total[5m]) >"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    assert run_promtool("check", "rules", "rules.yaml", cwd=tmp_path).returncode != 0
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(True)}))
    tests = yaml.safe_load(RULE_TESTS.read_text())
    first = tests["tests"][0]["alert_rule_test"][0]  # a "stays quiet" case: expect it to fire instead
    first["exp_alerts"] = [
        {"exp_labels": {"severity": "critical", "namespace": "facegate", "service": "embedding"}}
    ]
    (tmp_path / "alerts.test.yaml").write_text(yaml.safe_dump(tests))
    assert run_promtool("test", "rules", "alerts.test.yaml", cwd=tmp_path).returncode != 0


def test_every_alert_has_a_summary_and_a_runbook_section() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("#")
    }
    for alert in alerts():
        annotations = alert.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning"), alert["alert"]
        anchor = annotations.get("runbook_url", "").rpartition("#")[2]
        assert anchor == alert["alert"].lower() and anchor in headings, (
            f"{alert['alert']}: no runbook heading {anchor!r}"
        )


# ---- the dashboard ----------------------------------------------------------------------------------


def tsc_dashboard(tmp_path: Path, dashboard: dict) -> subprocess.CompletedProcess:
    modules = node_modules()
    (tmp_path / "dashboard.ts").write_text(
        "import type { Dashboard } from '@grafana/schema';\n"
        f"export const dashboard = ({json.dumps(dashboard, indent=1)}) satisfies Dashboard;\n"
    )
    (tmp_path / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "strict": True,
                    "noEmit": True,
                    "module": "nodenext",
                    "moduleResolution": "nodenext",
                    "target": "es2022",
                    "skipLibCheck": True,
                    "types": [],
                    "typeRoots": [],
                },
                "files": ["dashboard.ts"],
            }
        )
    )
    link = tmp_path / "node_modules"
    if not link.exists():
        link.symlink_to(modules)
    return subprocess.run(
        [str(modules / ".bin" / "tsc"), "-p", "tsconfig.json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )


def test_dashboard_satisfies_the_grafana_schema(tmp_path) -> None:
    done = tsc_dashboard(tmp_path, json.loads(DASHBOARD.read_text()))
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_schema_check_rejects_a_bad_dashboard(tmp_path) -> None:
    unknown = json.loads(DASHBOARD.read_text())
    unknown["refreshEvery"] = "30s"
    done = tsc_dashboard(tmp_path, unknown)
    assert done.returncode != 0 and "refreshEvery" in done.stdout, done.stdout
    wrong_type = json.loads(DASHBOARD.read_text())
    wrong_type["panels"][1]["gridPos"]["w"] = "half"
    done = tsc_dashboard(tmp_path, wrong_type)
    assert done.returncode != 0 and "TS2322" in done.stdout, done.stdout


def test_dashboard_covers_what_ops_looks_at_first() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in (
        "facegate_gateway_decisions_total",  # decisions by outcome
        "facegate_gateway_decision_reasons_total",  # and reason
        "facegate_gateway_stage_seconds_bucket",  # stage latencies
        "facegate_rpc_requests_total",  # throughput
        "facegate_embedding_batch_size_bucket",  # batch sizes
        "facegate_embedding_cache_total",  # cache hit ratio
        "facegate_watchlist_templates",  # watchlist size
        "facegate_gateway_saturated_total",  # saturation
    ):
        assert metric in exprs, metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


# ---- metrics used = metrics exported ------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """{series name: label names} from a running server's /metrics, with every service's metrics module
    loaded as its server loads it."""
    # The servers' modules register their metrics on import (the TensorFlow services' server modules
    # would load TensorFlow, so their metrics modules stand in for them).
    import importlib

    from prometheus_client import REGISTRY

    from tests.runtime.app import ImageProbe
    from tests.support import serve

    for module in (
        "gateway.server",
        "services.docverify.server",
        "services.watchlist.server",
        "services.detection.metrics",
        "services.embedding.metrics",
    ):
        importlib.import_module(module)

    with serve(ImageProbe(), label="deploy-metrics") as running:
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
    families: dict[str, str] = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    labels_of = {}
    for collector, names in REGISTRY._collector_to_names.items():
        for name in names:
            labels_of[name] = set(getattr(collector, "_labelnames", ()))
    out: dict[str, set[str]] = {}
    for family, kind in families.items():
        if kind == "counter":
            family = family.removesuffix("_total")  # the text format names a counter with or without it
        for suffix in suffixes.get(kind, ("",)):
            series = family + suffix
            out[series] = labels_of.get(series, labels_of.get(family, set())) | (
                {"le"} if suffix == "_bucket" else set()
            )
    return out


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every series selector in a PromQL expression."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # no identifiers inside strings
    out = []
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\[[^\]]*\])?", expr):
        name, braces, rng = m.group(1), m.group(2), m.group(3)
        after = expr[m.end() : m.end() + 1]
        before = expr[: m.start()].rstrip()
        if (
            name in PROMQL_WORDS
            or after == "("
            or before.endswith(("by (", "on (", "without (", "ignoring ("))
        ):
            continue
        if (
            before.endswith(("by(", "on(", ","))
            and not braces
            and not rng
            and not name.startswith("facegate_")
        ):
            continue  # a label in a grouping list
        if braces or rng or name.startswith("facegate_") or name in PROMETHEUS_OWN:
            labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", braces or ""))
            out.append((name, labels))
    return out


def used_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    panel_exprs = [
        (f"panel {p['title']!r}", t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])
    ]
    variable_exprs = [
        (f"variable {v['name']}", re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["query"]))
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
    ]
    return [(f"alert {a['alert']}", a["expr"]) for a in alerts()] + panel_exprs + variable_exprs


def unknown_metrics(expressions: list[tuple[str, str]], exported: dict[str, set[str]]) -> list[str]:
    problems = []
    for where, expr in expressions:
        found = selectors(expr)
        if not found:
            problems.append(f"{where}: no metric found in {expr!r}")
        for name, labels in found:
            if name in PROMETHEUS_OWN:
                continue
            if name not in exported:
                problems.append(f"{where}: {name} is not exported by the code")
                continue
            stray = labels - exported[name] - TARGET_LABELS
            if stray:
                problems.append(f"{where}: {name} has no label {sorted(stray)}")
    return problems


def test_every_metric_alerts_and_panels_use_is_exported(exported) -> None:
    assert (
        "facegate_rpc_requests_total" in exported and "facegate_gateway_audit_write_errors_total" in exported
    )
    problems = unknown_metrics(used_expressions(), exported)
    assert not problems, "\n".join(problems)


def test_a_metric_the_code_does_not_export_is_caught(exported) -> None:
    problems = unknown_metrics(
        [
            ("typo", "sum(rate(facegate_gateway_decision_total[5m]))"),
            ("wrong label", 'facegate_embedding_cache_total{outcome="hit"}'),
            ("fine", 'rate(facegate_rpc_requests_total{service="gateway", namespace="x"}[5m])'),
        ],
        exported,
    )
    assert any("facegate_gateway_decision_total is not exported" in p for p in problems)
    assert any("no label ['outcome']" in p for p in problems)
    assert not any(p.startswith("fine") for p in problems)
