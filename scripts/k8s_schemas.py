"""Kubernetes JSON schemas for kubeconform, offline: from the wheel of the PyPI package
kubernetes-validate (not installed, only read), the strict schemas of the given Kubernetes
versions into OUT/v<X.Y.Z>-local-strict/<kind>-<group>-<version>.json.

The bundled files carry an https ``$id`` and refer to ``/api/_definitions.json#...``;
kubeconform would fetch both from the web, so the ``$id`` is dropped and the references
point at the sibling ``_definitions.json``.

    python3 scripts/k8s_schemas.py WHEEL OUT 1.29.0 1.37.0
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

PREFIX = "kubernetes_validate/kubernetes-json-schema/"


def convert(wheel: Path, out: Path, version: str) -> int:
    folder = f"v{version}-local-strict"
    target = out / folder
    tmp = out / f".{folder}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if not (name.startswith(f"{PREFIX}{folder}/") and name.endswith(".json")):
                continue
            text = z.read(name).decode("utf-8").replace('"/api/_definitions.json#', '"_definitions.json#')
            schema = json.loads(text)
            schema.pop("$id", None)
            (tmp / Path(name).name).write_text(json.dumps(schema, separators=(",", ":")), encoding="utf-8")
            count += 1
    if count == 0:
        raise SystemExit(f"{wheel} holds no schemas for Kubernetes {version}")
    tmp.rename(target)  # complete or absent: a half-written folder never looks done
    return count


def main(argv: list[str]) -> None:
    wheel, out, versions = Path(argv[0]), Path(argv[1]), argv[2:]
    for version in versions:
        if (out / f"v{version}-local-strict").is_dir():
            continue
        print(f"Kubernetes {version} schemas: {convert(wheel, out, version)} files in {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
