#!/usr/bin/env bash
# Interop with other stacks' official SDKs: the CloudEvents Python SDK, a standard JSON Schema
# validator and a third-party AsyncAPI 3 parser, in a venv of their own, against the broker the
# test command started. Usage: scripts/interop.sh [amqp-url]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

url="${1:-${AMQP_URL:-amqp://guest:guest@127.0.0.1:${AMQP_PORT:-5672}/}}"
venv=.build/interop-venv
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
  'cloudevents==2.2.0' 'pika==1.3.2' 'jsonschema==4.26.0' 'asyncapi-python[codegen]==0.3.1'
swift build --package-path Examples
"$venv/bin/python" Tests/Interop/cloudevents_interop.py "$(swift build --package-path Examples --show-bin-path)" "$url"
