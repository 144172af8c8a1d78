#!/usr/bin/env bash
# Runs every test: the libraries' (unit and integration), then the examples', against a RabbitMQ
# node of the tests' own that it starts on ports of its own (AMQP 5692, TLS 5691, data in
# .broker-test/) and stops afterwards: a broker the developer runs is never touched. Extra
# arguments go to `swift test` (e.g. --filter ChannelErrorTests).
#
#   scripts/test.sh --cluster   starts the three-node cluster (scripts/cluster.sh) and runs the
#                               cluster tests: nodes killed under load, quorum queues, streams.
#
# Every test runs: nothing is skipped for want of a TLS listener, rabbitmqctl or the samples
# (AMQP_REQUIRE_ALL=1 turns such a skip into a failure).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# AMQPEventsSQLite's store is behind the package's SQLite trait; the tests use it.
traits=(--traits SQLite)

if [[ "${1:-}" == "--cluster" ]]; then
  scripts/cluster.sh start
  swift build "${traits[@]}"
  AMQP_CLUSTER_TESTS=1 swift test "${traits[@]}" --filter ClusterTests
  exit
fi

export AMQP_PORT="${AMQP_TEST_PORT:-5692}" AMQPS_PORT="${AMQPS_TEST_PORT:-5691}"
export BROKER_DIST_PORT="${BROKER_TEST_DIST_PORT:-25692}"
export BROKER_STATE="$PWD/.broker-test" BROKER_NODE="amqp-swift-test@localhost"
scripts/broker.sh start --own
trap 'scripts/broker.sh stop' EXIT
export AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
export AMQP_TLS_DIR="$BROKER_STATE/tls" AMQP_BROKER_CONTROL=1 AMQP_REQUIRE_ALL=1

# The samples' processes are part of some library tests: build them first.
swift build "${traits[@]}"
swift build --package-path Examples
if [[ $# -gt 0 ]]; then
  swift test "${traits[@]}" "$@"
  exit
fi
# A memory alarm or a broker restart disturbs every connection, and the soak test measures the
# process's memory: those run alone, after the others.
swift test "${traits[@]}" --skip RunAloneTests
AMQP_RUN_ALONE_TESTS=1 swift test "${traits[@]}" --filter RunAloneTests

# The examples' own tests: their handlers on the in-memory broker, their contracts, their tracer.
swift test --package-path Examples

# What handles untrusted input, once more under AddressSanitizer: the hostile-broker suite (its
# probe built with ASan too), TLS, and the unit tests. LeakSanitizer is off: it takes the Swift
# runtime's side tables for leaks.
echo "test.sh: the hostile-broker, TLS and unit tests under AddressSanitizer"
ASAN_OPTIONS=detect_leaks=0 swift test "${traits[@]}" --sanitize=address --scratch-path .build-asan \
  --filter "HostileBrokerTests|TLSTests|AMQPClientTests"

# A minute of fuzzing the URI parser and the frame decoders: 0 crashes.
scripts/fuzz.sh 30
