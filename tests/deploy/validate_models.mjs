// Validates Kubernetes objects with the npm packages kubernetes-models (core and apps kinds,
// quantities included), @kubernetes-models/prometheus-operator (PodMonitor, ServiceMonitor,
// PrometheusRule) and @kubernetes-models/cert-manager (Certificate, Issuer). Input: a JSON array of objects on stdin. Output: one JSON line per object,
// {"kind", "name", "ok", "error"}; kinds neither package knows are reported with "skipped": true.
// Run by tests/deploy/test_manifests.py with FACEGATE_NODE_MODULES = the cached node_modules folder.
import { existsSync } from "node:fs";
import path from "node:path";

const root = process.env.FACEGATE_NODE_MODULES;

function modulePath(obj) {
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
  if (group === "monitoring.coreos.com") return `@kubernetes-models/prometheus-operator/${group}/${version}/${obj.kind}`;
  if (group === "cert-manager.io") return `@kubernetes-models/cert-manager/${group}/${version}/${obj.kind}`;
  return group ? `kubernetes-models/${group}/${version}/${obj.kind}` : `kubernetes-models/${version}/${obj.kind}`;
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
for (const obj of JSON.parse(input)) {
  const name = obj.metadata?.name ?? "";
  const file = path.join(root, modulePath(obj) + ".js");
  if (!existsSync(file)) {
    console.log(JSON.stringify({ kind: obj.kind, name, ok: true, skipped: true }));
    continue;
  }
  const mod = await import(file);
  const Model = mod[obj.kind] ?? mod.default;
  try {
    new Model(obj).validate();
    console.log(JSON.stringify({ kind: obj.kind, name, ok: true }));
  } catch (err) {
    console.log(JSON.stringify({ kind: obj.kind, name, ok: false, error: String(err.message ?? err).slice(0, 2000) }));
  }
}
