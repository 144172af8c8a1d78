#!/usr/bin/env bash
# Runs the whole test suite (unit and integration) against a RabbitMQ that scripts/broker.sh
# starts or reuses. Extra arguments go to `swift test` (e.g. --filter ChannelErrorTests).
#
#   scripts/test.sh --cluster   starts the three-node cluster (scripts/cluster.sh) and runs the
#                               cluster tests: nodes killed under load, quorum queues, streams.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${1:-}" == "--cluster" ]]; then
  scripts/cluster.sh start
  swift build
  AMQP_CLUSTER_TESTS=1 swift test --filter ClusterTests
  exit
fi

scripts/broker.sh start
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:${AMQP_PORT:-5672}/}"
# The sample tests run the sample executables, so build them too.
swift build
if [[ $# -gt 0 ]]; then
  swift test "$@"
  exit
fi
# A memory alarm or a broker restart disturbs every connection, and the soak test measures the
# process's memory: those run alone, after the others.
swift test --skip RunAloneTests
AMQP_RUN_ALONE_TESTS=1 swift test --filter RunAloneTests

# What handles untrusted input, once more under AddressSanitizer: the hostile-broker suite (its
# probe built with ASan too), TLS, and the unit tests. LeakSanitizer is off: it takes the Swift
# runtime's side tables for leaks.
echo "test.sh: the hostile-broker, TLS and unit tests under AddressSanitizer"
ASAN_OPTIONS=detect_leaks=0 swift test --sanitize=address --scratch-path .build-asan \
  --filter "HostileBrokerTests|TLSTests|AMQPClientTests"

# A minute of fuzzing the URI parser and the frame decoders: 0 crashes.
scripts/fuzz.sh 30
