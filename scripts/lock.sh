#!/usr/bin/env bash
# Re-resolve the pinned, hashed requirements from the version ranges in pyproject.toml:
#   requirements/service.lock  what the service needs (the Docker image installs exactly this)
#   requirements/dev.lock      that plus the test and development tools (CI installs this)
# Run after changing a dependency range; commit the result. Needs uv (pip install uv).
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--universal --python-version 3.11 --generate-hashes -q --custom-compile-command scripts/lock.sh)
uv pip compile pyproject.toml "${common[@]}" -o requirements/service.lock
uv pip compile pyproject.toml --extra dev "${common[@]}" -o requirements/dev.lock
