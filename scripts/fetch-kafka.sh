#!/usr/bin/env bash
# Pre-fetch the local Kafka broker's jars into the cache ($BREACHWATCH_CACHE_DIR or ~/.cache/breachwatch).
set -euo pipefail
cd "$(dirname "$0")/.." && exec python -m streams.local_kafka fetch "$@"
