#!/usr/bin/env bash
# Compares the libraries' public API with the last release's (the commit in .api-baseline) and
# fails on a break that .api-breakages does not announce (CHANGELOG.md says why each is there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

baseline="$(tr -d '[:space:]' < .api-baseline)"
if ! git cat-file -e "$baseline^{commit}" 2>/dev/null; then
  echo "api-check: the release commit $baseline (.api-baseline) is not in this clone" >&2
  exit 1
fi
allowlist=()
[[ -s .api-breakages ]] && allowlist=(--breakage-allowlist-path .api-breakages)
echo "api-check: the public API against the release at $baseline"
# AMQPEventsSQLite's API is behind the SQLite trait, which this command does not enable.
swift package diagnose-api-breaking-changes "$baseline" --products AMQPClient AMQPEvents AMQPEventsTesting "${allowlist[@]}"
