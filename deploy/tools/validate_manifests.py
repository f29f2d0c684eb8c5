#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests (the output of `helm template`).

Built-in kinds are checked with kubernetes-validate against the Kubernetes OpenAPI schemas
(strict: unknown fields are errors) for every --kube-version given. Custom resources (KEDA,
Karpenter, Volcano) are checked against the openAPIV3Schema of their CRD in --crds, tightened the
way the API server prunes: an object schema with `properties` and neither
`additionalProperties` nor `x-kubernetes-preserve-unknown-fields` rejects unknown fields, so a
typo is an error here instead of a silently dropped field there. CEL rules
(`x-kubernetes-validations`) are not evaluated. Prometheus operator objects (monitoring.coreos.com)
are checked by validate_monitoring.mjs with the validators generated from the operator's CRDs
(npm @kubernetes-models/prometheus-operator, --monitoring-modules): field types and required
fields, not unknown fields.

Prints one line per object and exits 1 if any object fails; with --json FILE also writes every
object as a JSON list for further checks.

usage: validate_manifests.py --crds DIR [--monitoring-modules NODE_MODULES] [--kube-version 1.33.0 ...]
                             [--json OUT] MANIFEST...
"""

import argparse
import copy
import json
import pathlib
import sys

import subprocess

import jsonschema
import kubernetes_validate
import yaml

MONITORING_GROUP = "monitoring.coreos.com"


def load_crds(root):
    """Maps (group, version, kind) to the version's openAPIV3Schema, for every CRD under root."""
    schemas = {}
    for path in sorted(pathlib.Path(root).rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if not version.get("served", False):
                    continue
                key = (spec["group"], version["name"], spec["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def tighten(schema):
    """Returns a copy that rejects fields the API server would prune."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields", False)
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # The API server validates metadata itself; the CRD schema only says `type: object`.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


def check_custom(doc, schemas):
    group, _, version = doc["apiVersion"].rpartition("/")
    key = (group, version, doc["kind"])
    if key not in schemas:
        known = ", ".join(sorted(f"{g}/{v} {k}" for g, v, k in schemas))
        return [f"no CRD schema for {group}/{version} {doc['kind']} (have: {known})"]
    validator = jsonschema.Draft7Validator(tighten(schemas[key]))
    return [
        f"{'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def check_monitoring(doc, modules):
    if not modules:
        return [f"{doc['kind']}: pass --monitoring-modules to validate {MONITORING_GROUP} objects"]
    script = pathlib.Path(__file__).with_name("validate_monitoring.mjs")
    out = subprocess.run(
        ["node", str(script), modules], input=json.dumps([doc]), capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        return [f"validate_monitoring.mjs failed: {out.stderr.strip()}"]
    return json.loads(out.stdout)[0]


def check_builtin(doc, versions):
    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path) or "<root>"
            errors.append(f"[k8s {version}] {path}: {err.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as err:
            errors.append(f"[k8s {version}] no usable schema: {err}")
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crds", required=True, help="directory with CRD YAML files")
    parser.add_argument("--kube-version", action="append", dest="versions", help="Kubernetes version(s)")
    parser.add_argument("--json", help="write every object as a JSON list here")
    parser.add_argument("--monitoring-modules", help="node_modules with @kubernetes-models/prometheus-operator")
    parser.add_argument("manifests", nargs="+")
    args = parser.parse_args()
    versions = args.versions or [kubernetes_validate.latest_version()]
    schemas = load_crds(args.crds)
    custom_groups = {group for group, _, _ in schemas}

    objects, failed = [], 0
    for manifest in args.manifests:
        for doc in yaml.safe_load_all(pathlib.Path(manifest).read_text()):
            if not doc:
                continue
            objects.append(doc)
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            group = doc.get("apiVersion", "").rpartition("/")[0]
            if group == MONITORING_GROUP:
                errors, how = check_monitoring(doc, args.monitoring_modules), "prometheus-operator models"
            elif group in custom_groups:
                errors, how = check_custom(doc, schemas), "CRD schema"
            else:
                errors, how = check_builtin(doc, versions), "Kubernetes " + ", ".join(versions)
            if errors:
                failed += 1
                print(f"FAIL {name} ({how})")
                for err in errors:
                    print(f"  {err}")
            else:
                print(f"ok   {name} ({how})")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(objects))
    print(f"{len(objects) - failed} valid, {failed} invalid")
    return 1 if failed or not objects else 0


if __name__ == "__main__":
    sys.exit(main())
