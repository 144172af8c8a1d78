#!/usr/bin/env bash
# Runs the samples end to end against a RabbitMQ that scripts/broker.sh starts or reuses. The
# user_events samples: a consumer waits for COUNT events (default 3), a producer publishes them, and
# the script checks that every one arrived, that the consumer continued each event's trace
# (--trace: W3C traceparent in the headers) and that it counted them (--metrics). Then the
# order-events, food-delivery and bookstore demos, which check that every service handled every
# order (the bookstore's with 30 % of its emails failing and one failing for good: 99 emails, 1 parked).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

count="${COUNT:-3}"
scripts/broker.sh start
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:${AMQP_PORT:-5672}/}"
# The samples are a package of their own (Examples/), on the libraries of this one.
swift build --package-path Examples
bin="$(swift build --package-path Examples --show-bin-path)"

out="$(mktemp)"
trap 'rm -f "$out" "${sent:-}"; [[ -n "${consumer_pid:-}" ]] && kill "$consumer_pid" 2>/dev/null || true' EXIT

timeout 60 "$bin/user-events-consumer" --count "$count" --trace --metrics >"$out" 2>&1 &
consumer_pid=$!
for _ in $(seq 1 100); do
  grep -q "Waiting for messages" "$out" && break
  kill -0 "$consumer_pid" 2>/dev/null || break
  sleep 0.1
done
cat "$out"

sent="$(mktemp)"
"$bin/user-events-producer" --count "$count" --trace 2>/dev/null | tee "$sent"

status=0
wait "$consumer_pid" || status=$?
consumer_pid=
tail -n +2 "$out"
received=$(grep -c '^ \[x\] Received USER_REGISTERED userId=' "$out" || true)
if [[ $status -ne 0 || $received -ne $count ]]; then
  echo "samples: FAILED: the consumer received $received of $count events (exit status $status)" >&2
  exit 1
fi
# Every trace the producer started, the consumer continued.
for trace in $(grep -o 'trace=[0-9a-f]\{32\}' "$sent" | cut -d= -f2); do
  if ! grep -q "continued trace=$trace" "$out"; then
    echo "samples: FAILED: the consumer did not continue trace $trace" >&2
    exit 1
  fi
done
if [[ $(grep -c 'trace=[0-9a-f]\{32\}' "$sent") -ne $count ]]; then
  echo "samples: FAILED: the producer did not print a trace id per event" >&2
  exit 1
fi
if ! grep -q "^messaging_client_consumed_messages{.*messaging_destination_name=\"user_events\"} $count\$" "$out"; then
  echo "samples: FAILED: the consumer's metrics do not count $count consumed events" >&2
  exit 1
fi
echo "samples: OK: $count events published and received, each in its producer's trace, and counted"

# The event-driven systems, each in one process: every service must handle every order.
run_demo() {
  local name="$1"; shift
  local log
  log="$(mktemp)"
  if ! timeout 300 "$bin/$name" demo "$@" >"$log" 2>&1; then
    tail -n 30 "$log"
    echo "samples: FAILED: $name demo $*" >&2
    rm -f "$log"
    exit 1
  fi
  grep '^demo: OK' "$log"
  rm -f "$log"
}
run_demo order-events --orders "${ORDERS:-100}"
run_demo food-delivery --orders "${FOOD_ORDERS:-50}" --chefs 3
run_demo bookstore --orders "${BOOK_ORDERS:-100}" --failure-rate 0.3 --fail-order 7
echo "samples: OK: user-events, order-events demo, food-delivery demo, bookstore demo"
