#!/usr/bin/env bash
# Applies named mutations to the client's state machines, one at a time, and checks that the
# broker-free tests catch each one (see scripts/mutation-check.py for the list).
#
#   scripts/mutation-check.sh [NAME_SUBSTRING ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 scripts/mutation-check.py "$@"
