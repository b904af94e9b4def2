"""CustomResourceDefinition YAML files to the JSON schemas kubeconform reads:
OUT/<group>/<kind, lower case>_<version>.json, one per served version. ``--strict`` also closes
every object that lists its properties (``additionalProperties: false``), except where the CRD
keeps unknown fields, so a misspelt field is an error as in Kubernetes' own strict schemas."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml


def convert(node: Any, strict: bool) -> Any:
    if isinstance(node, list):
        return [convert(n, strict) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: convert(v, strict) for k, v in node.items()}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    keeps_unknown = node.get("x-kubernetes-preserve-unknown-fields")
    if strict and "properties" in node and "additionalProperties" not in node and not keeps_unknown:
        node["additionalProperties"] = False
    return node


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("crds", nargs="+", type=Path)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    for path in args.crds:
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = convert(version["schema"]["openAPIV3Schema"], args.strict)
                properties = schema.setdefault("properties", {})
                properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
                properties["kind"] = {"type": "string", "enum": [kind]}
                properties.setdefault("metadata", {"type": "object"})
                target = args.out / group / f"{kind.lower()}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema, separators=(",", ":")), encoding="utf-8")
                print(target)


if __name__ == "__main__":
    main()
