#!/usr/bin/env bash
# Installs what BreachWatch needs on a Debian machine, idempotently:
#   scripts/setup.sh          the Python packages (editable) with their pinned dependencies, Kafka broker jars
#   scripts/setup.sh --test   the above plus the test services and tools (PostgreSQL, kcat, Chromium,
#                             promtool; helm, kubeconform and the Kubernetes schemas into the cache)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
if (( want_test )); then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
  command -v kcat >/dev/null || need_apt+=(kcat)
  command -v chromium >/dev/null || need_apt+=(chromium)
fi
if (( ${#need_apt[@]} )); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${need_apt[*]} (run as root, or install them: apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if (( want_test )) && ! command -v promtool >/dev/null; then
  # Prometheus's rule checker, for the alerting rules' unit tests (the server is not started).
  [[ $(id -u) -eq 0 ]] || { echo "missing promtool (run as root, or: apt-get install prometheus)" >&2; exit 1; }
  echo "installing Debian package: prometheus (for promtool)"
  (( ${#need_apt[@]} )) || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

PY=${PYTHON:-python3}
# The pinned, hashed dependencies (requirements/dev.lock), then the service and the development
# kit from this checkout (editable, so a change needs no reinstall). A lock that changed since
# the last install is installed again.
stamp=.setup-done
if [[ ! -f $stamp ]] || ! cmp -s requirements/dev.lock "$stamp" \
   || ! "$PY" -c "import breachwatch.devkit, breachwatch.cli, importlinter" 2>/dev/null; then
  echo "installing the Python packages (requirements/dev.lock) and BreachWatch with its development kit"
  "$PY" -m pip install -q --disable-pip-version-check --require-hashes -r requirements/dev.lock
  "$PY" -m pip install -q --disable-pip-version-check --no-deps -e . -e ./devkit
  cp requirements/dev.lock "$stamp"
fi

# The Kafka broker's jars from Maven Central into the cache (a no-op once cached).
"$PY" -m breachwatch broker fetch

# The deployment tests' tools (helm, kubeconform, the Kubernetes schemas) into the cache.
if (( want_test )); then
  scripts/install_deploy_tools.sh
fi
