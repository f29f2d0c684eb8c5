// Validates Prometheus operator objects (monitoring.coreos.com/v1 PrometheusRule, ServiceMonitor,
// PodMonitor) with the validators @kubernetes-models/prometheus-operator generates from the
// operator's CRD schemas (npm registry; scripts/install-test-deps installs it).
//
// usage: node validate_monitoring.mjs NODE_MODULES_DIR < objects.json
// Reads a JSON list of objects; prints a JSON list with one list of error messages per object
// (empty: valid). Called by validate_manifests.py for the monitoring.coreos.com group.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: node validate_monitoring.mjs NODE_MODULES_DIR < objects.json");
  process.exit(2);
}
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const object of objects) {
  const kind = object.kind;
  const file = join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1", `${kind}.js`);
  let model;
  try {
    model = (await import(pathToFileURL(file)))[kind];
  } catch (e) {
    results.push([`no validator for monitoring.coreos.com/v1 ${kind}: ${e.message}`]);
    continue;
  }
  try {
    new model(object).validate();
    results.push([]);
  } catch (e) {
    const details = (e.errors || []).map((d) => `${d.instancePath || "/"}: ${d.message}`);
    results.push(details.length ? details : [String(e.message || e)]);
  }
}
console.log(JSON.stringify(results));
