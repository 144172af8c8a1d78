#!/usr/bin/env bash
# Runs a three-node RabbitMQ cluster on 127.0.0.1 for the cluster tests, from Debian's
# rabbitmq-server package (no Docker needed; with Docker, `docker compose --profile cluster up`
# does the same).
#
#   scripts/cluster.sh start         start the three nodes (or reuse them), join them, wait until all run
#   scripts/cluster.sh stop          stop them
#   scripts/cluster.sh status        exit 0 when all three nodes run in one cluster
#   scripts/cluster.sh kill N        end node N (1, 2, 3) abruptly: its OS process gets SIGKILL
#   scripts/cluster.sh restart N     start node N again and wait until it is back in the cluster
#   scripts/cluster.sh ctl N ...     rabbitmqctl against node N
#
# Node N is amqp-cluster-N@localhost, AMQP on 127.0.0.1:$((CLUSTER_BASE_PORT + N)) (5681, 5682,
# 5683 by default), Erlang distribution on that port + 20000, data under .cluster/nodeN. The nodes
# share one Erlang cookie (.cluster/home/.erlang.cookie).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/.cluster"
base_port="${CLUSTER_BASE_PORT:-5680}"
timeout_s="${BROKER_START_TIMEOUT:-120}"

# shellcheck source=rabbitmq-node-env.sh
source "$root/scripts/rabbitmq-node-env.sh"

log() { echo "cluster: $*" >&2; }
node_name() { echo "amqp-cluster-$1@localhost"; }
node_port() { echo $((base_port + $1)); }

node_env() {
  # One HOME for all: one Erlang cookie, so that the nodes and rabbitmqctl trust each other.
  rabbitmq_node_env "$(node_name "$1")" "$(node_port "$1")" "$state/node$1" "$state/home"
}

ctl() {
  local n=$1
  shift
  (node_env "$n" && /usr/lib/rabbitmq/bin/rabbitmqctl -n "$(node_name "$n")" "$@")
}

amqp_answers() {
  local reply
  reply=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'AMQP\x00\x00\x09\x01' >&3 && head -c 1 <&3 | od -An -tx1" 2>/dev/null) || return 1
  [[ "$(echo "$reply" | tr -d ' \n')" == "01" ]]
}

wait_for_node() {
  local n=$1 deadline=$((SECONDS + timeout_s))
  until amqp_answers "$(node_port "$n")"; do
    if ((SECONDS >= deadline)); then
      log "node $n did not accept AMQP connections on 127.0.0.1:$(node_port "$n") within ${timeout_s}s"
      tail -n 30 "$state/node$n/log/"*.log >&2 2>/dev/null || true
      return 1
    fi
    sleep 1
  done
  ctl "$n" await_startup >/dev/null
}

start_node() {
  local n=$1
  mkdir -p "$state/node$n/mnesia" "$state/node$n/log" "$state/home"
  : >"$state/node$n/enabled_plugins"
  cat >"$state/node$n/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$(node_port "$n")
loopback_users.guest = true
log.console = false
log.file.level = info
CONF
  log "starting node $n ($(node_name "$n")) on 127.0.0.1:$(node_port "$n")"
  (node_env "$n" && /usr/lib/rabbitmq/bin/rabbitmq-server -detached)
}

running_nodes() {
  ctl "${1:-1}" cluster_status --formatter json 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("running_nodes", [])))' 2>/dev/null || echo 0
}

wait_for_cluster() {
  local deadline=$((SECONDS + timeout_s)) any
  while true; do
    for any in 1 2 3; do
      if amqp_answers "$(node_port "$any")" && [[ "$(running_nodes "$any")" == 3 ]]; then return 0; fi
    done
    if ((SECONDS >= deadline)); then
      log "the cluster did not have three running nodes within ${timeout_s}s"
      return 1
    fi
    sleep 1
  done
}

start() {
  [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || { log "rabbitmq-server is not installed: apt-get install rabbitmq-server"; return 1; }
  if status >/dev/null 2>&1; then
    log "reusing the running cluster"
    return 0
  fi
  mkdir -p "$state/home"
  [[ -f "$state/home/.erlang.cookie" ]] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/home/.erlang.cookie"; chmod 400 "$state/home/.erlang.cookie"; }
  local n
  for n in 1 2 3; do amqp_answers "$(node_port "$n")" || start_node "$n"; done
  for n in 1 2 3; do wait_for_node "$n"; done
  for n in 2 3; do
    if ! ctl "$n" cluster_status 2>/dev/null | grep -q "$(node_name 1)"; then
      log "joining node $n to node 1"
      ctl "$n" stop_app >/dev/null
      ctl "$n" join_cluster "$(node_name 1)" >/dev/null
      ctl "$n" start_app >/dev/null
    fi
  done
  wait_for_cluster
  log "three nodes running in one cluster on 127.0.0.1:$(node_port 1), $(node_port 2), $(node_port 3)"
}

status() {
  local n
  for n in 1 2 3; do amqp_answers "$(node_port "$n")" || { echo "node $n: down"; return 1; }; done
  [[ "$(running_nodes 1)" == 3 ]] || { echo "fewer than three nodes in the cluster"; return 1; }
  echo "three nodes running"
}

kill_node() {
  local n=$1 pid
  pid="$(cat "$state/node$n/rabbitmq.pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] || pid="$(pgrep -f "beam.*-sname $(node_name "$n")" | head -n 1 || true)"
  [[ -n "$pid" ]] || { log "node $n is not running"; return 1; }
  log "killing node $n (pid $pid)"
  kill -KILL "$pid"
  # Its port closes with the process.
  local deadline=$((SECONDS + 30))
  while amqp_answers "$(node_port "$n")"; do
    ((SECONDS < deadline)) || { log "node $n still answers"; return 1; }
    sleep 0.2
  done
}

stop() {
  local n
  for n in 1 2 3; do
    if amqp_answers "$(node_port "$n")"; then ctl "$n" stop >/dev/null 2>&1 || true; fi
  done
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  kill) kill_node "${2:?node number}" ;;
  restart)
    start_node "${2:?node number}"
    wait_for_node "$2"
    wait_for_cluster
    ;;
  ctl)
    n="${2:?node number}"
    shift 2
    ctl "$n" "$@"
    ;;
  *)
    echo "usage: $0 start|stop|status|kill N|restart N|ctl N ..." >&2
    exit 2
    ;;
esac
