#!/usr/bin/env bash
# The tools the deployment tests use, into the cache (a no-op once there; versions in
# scripts/deploy-tools.env): helm and kubeconform built from their Go modules with the machine's
# Go, and the Kubernetes JSON schemas from the kubernetes-validate wheel, converted for kubeconform.
# A cold build takes several minutes (helm most of them); the two builds run side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy-tools.env
source scripts/deploy-tools.env
PY=${PYTHON:-python3}
cache=${BREACHWATCH_CACHE_DIR:-$HOME/.cache/breachwatch}
bin=$cache/tools/bin
mkdir -p "$bin" "$cache/downloads"

have() {  # the tool is there at the pinned version
  [[ -x $bin/$1 && "$(cat "$bin/$1.version" 2>/dev/null)" == "$2" ]]
}

build() {  # name module version: go install into the cache, with the version noted beside it
  local log="$cache/tools/$1.log"
  echo "building $1 $3 (Go module $2)"
  if GOBIN=$bin GOFLAGS=-buildvcs=false go install "$2@$3" >"$log" 2>&1; then
    echo "$3" >"$bin/$1.version"
  else
    echo "building $1 failed:" >&2; tail -20 "$log" >&2; return 1
  fi
}

pids=()
if ! have helm "$HELM_VERSION" || ! have kubeconform "$KUBECONFORM_VERSION"; then
  command -v go >/dev/null || { echo "Go is needed to build helm and kubeconform (apt-get install golang)" >&2; exit 1; }
  have helm "$HELM_VERSION" || { build helm "$HELM_MODULE" "$HELM_VERSION" & pids+=($!); }
  have kubeconform "$KUBECONFORM_VERSION" || { build kubeconform "$KUBECONFORM_MODULE" "$KUBECONFORM_VERSION" & pids+=($!); }
fi

wheel=$cache/downloads/kubernetes_validate-$KUBERNETES_VALIDATE_VERSION-py3-none-any.whl
if ! echo "$KUBERNETES_VALIDATE_SHA256  $wheel" | sha256sum -c --status 2>/dev/null; then
  echo "downloading kubernetes-validate $KUBERNETES_VALIDATE_VERSION (its Kubernetes schemas)"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$cache/downloads" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  echo "$KUBERNETES_VALIDATE_SHA256  $wheel" | sha256sum -c --status \
    || { echo "kubernetes-validate wheel: unexpected SHA-256" >&2; rm -f "$wheel"; exit 1; }
fi
# shellcheck disable=SC2086
"$PY" scripts/k8s_schemas.py "$wheel" "$cache/k8s-schemas" $K8S_VERSIONS

status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
