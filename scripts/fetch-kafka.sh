#!/usr/bin/env bash
# Pre-fetch the embedded Kafka broker's jars into the cache ($BREACHWATCH_CACHE_DIR or ~/.cache/breachwatch).
set -euo pipefail
exec breachwatch broker fetch "$@"
