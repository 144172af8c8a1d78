#!/usr/bin/env bash
# Starts, checks or stops the RabbitMQ broker used by the samples and the tests.
#
#   scripts/broker.sh start    reuse a broker that already answers on 127.0.0.1:$AMQP_PORT;
#                              else `docker compose up` where a Docker engine answers;
#                              else a RabbitMQ node from Debian's rabbitmq-server package,
#                              bound to 127.0.0.1, with its data under .broker/
#                              (the package is installed when missing and we are root).
#   scripts/broker.sh stop     stops the broker only if this script started it.
#   scripts/broker.sh status   exits 0 when a broker accepts AMQP connections.
#   scripts/broker.sh ctl ...  runs rabbitmqctl against the broker this script started.
#
# Environment: AMQP_PORT (default 5672), BROKER_START_TIMEOUT seconds (default 90).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/.broker"
port="${AMQP_PORT:-5672}"
timeout_s="${BROKER_START_TIMEOUT:-90}"
node="amqp-swift@localhost"

log() { echo "broker: $*" >&2; }

# True when something on 127.0.0.1:$port answers the AMQP 0-9-1 protocol header with a frame.
amqp_answers() {
  local reply
  reply=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf 'AMQP\x00\x00\x09\x01' >&3 && head -c 1 <&3 | od -An -tx1" 2>/dev/null) || return 1
  [[ "$(echo "$reply" | tr -d ' \n')" == "01" ]]
}

wait_for_amqp() {
  local deadline=$((SECONDS + timeout_s))
  until amqp_answers; do
    if ((SECONDS >= deadline)); then
      log "RabbitMQ did not accept AMQP connections on 127.0.0.1:$port within ${timeout_s}s"
      [[ -f "$state/log/$node.log" ]] && tail -n 40 "$state/log/$node.log" >&2
      return 1
    fi
    sleep 1
  done
}

local_env() {
  export RABBITMQ_NODENAME="$node"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="$port"
  export RABBITMQ_DIST_PORT=$((port + 20000))
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE="$state/mnesia"
  export RABBITMQ_LOG_BASE="$state/log"
  export RABBITMQ_PID_FILE="$state/rabbitmq.pid"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$state/enabled_plugins"
  export RABBITMQ_CONFIG_FILE="$state/rabbitmq"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export HOME="$state/home"
}

ctl() {
  case "$(cat "$state/started-by" 2>/dev/null || true)" in
    docker) docker compose -f "$root/docker-compose.yml" exec -T rabbitmq rabbitmqctl "$@" ;;
    local)
      local_env
      /usr/lib/rabbitmq/bin/rabbitmqctl -n "$node" "$@"
      ;;
    *) rabbitmqctl "$@" ;;  # a broker this script did not start, e.g. the system's service
  esac
}

ensure_package() {
  [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    log "rabbitmq-server is not installed; run: sudo apt-get install rabbitmq-server"
    return 1
  fi
  log "installing rabbitmq-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq rabbitmq-server >/dev/null
}

start_local() {
  ensure_package
  mkdir -p "$state/mnesia" "$state/log" "$state/home"
  echo "[]." >"$state/enabled_plugins"
  cat >"$state/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$port
loopback_users.guest = true
log.console = false
log.file.level = info
CONF
  local_env
  # Debian's package may have started its own node through the init system; it would hold the port.
  log "starting a local RabbitMQ node ($node) on 127.0.0.1:$port, data in .broker/"
  /usr/lib/rabbitmq/bin/rabbitmq-server -detached
  echo local >"$state/started-by"
  wait_for_amqp
  ctl await_startup >/dev/null
}

start_docker() {
  log "starting RabbitMQ with docker compose"
  docker compose -f "$root/docker-compose.yml" up -d --wait
  mkdir -p "$state"
  echo docker >"$state/started-by"
  wait_for_amqp
}

case "${1:-}" in
  start)
    if amqp_answers; then
      log "reusing the broker that answers on 127.0.0.1:$port"
      exit 0
    fi
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
      start_docker
    else
      start_local
    fi
    log "RabbitMQ is ready on amqp://guest:guest@127.0.0.1:$port/"
    ;;
  stop)
    case "$(cat "$state/started-by" 2>/dev/null || true)" in
      local) ctl stop >/dev/null && log "stopped the local node" ;;
      docker) docker compose -f "$root/docker-compose.yml" down && log "stopped the docker compose broker" ;;
      *) log "this script did not start the running broker; leaving it alone" ;;
    esac
    rm -f "$state/started-by"
    ;;
  status)
    amqp_answers
    ;;
  ctl)
    shift
    ctl "$@"
    ;;
  *)
    echo "usage: $0 start|stop|status|ctl ARGS..." >&2
    exit 2
    ;;
esac
