#!/usr/bin/env bash
# Starts, checks or stops the RabbitMQ broker used by the samples and the tests.
#
#   scripts/broker.sh start    reuse a broker that already answers on 127.0.0.1:$AMQP_PORT;
#                              else `docker compose up` where a Docker engine answers;
#                              else a RabbitMQ node from Debian's rabbitmq-server package,
#                              bound to 127.0.0.1, with its data under .broker/
#                              (the package is installed when missing and we are root).
#   scripts/broker.sh start --own
#                              always a node of this script's own from Debian's package (never a
#                              broker that runs already, never Docker): what the tests use, so
#                              that they never touch a developer's broker. Fails if something
#                              else holds the port.
#   scripts/broker.sh stop     stops the broker only if this script started it.
#   scripts/broker.sh status   exits 0 when a broker accepts AMQP connections.
#   scripts/broker.sh ctl ...  runs rabbitmqctl against the broker this script started.
#   scripts/broker.sh certs    makes the test certificates under .broker/tls (start does too).
#
# The broker also listens for TLS (amqps) on 127.0.0.1:$AMQPS_PORT with a server certificate for
# localhost and 127.0.0.1 signed by a CA of its own (.broker/tls/ca.pem), asks clients for a
# certificate (optional), and accepts SASL EXTERNAL for the user of .broker/tls/client.pem.
#
# Environment: AMQP_PORT (default 5672), AMQPS_PORT (default 5671), BROKER_START_TIMEOUT seconds
# (default 90), BROKER_STATE (the node's directory, default .broker), BROKER_NODE (its name,
# default amqp-swift@localhost), BROKER_DIST_PORT (Erlang distribution, default AMQP_PORT + 20000).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${BROKER_STATE:-$root/.broker}"
port="${AMQP_PORT:-5672}"
tls_port="${AMQPS_PORT:-5671}"
tls="$state/tls"
# The user RabbitMQ takes from the client certificate's common name (SASL EXTERNAL).
client_user="amqp-swift-client"
timeout_s="${BROKER_START_TIMEOUT:-90}"
node="${BROKER_NODE:-amqp-swift@localhost}"
# shellcheck source=rabbitmq-node-env.sh
source "$root/scripts/rabbitmq-node-env.sh"

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
  rabbitmq_node_env "$node" "$port" "$state" "$state/home"
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

# A CA, a server certificate for localhost and 127.0.0.1, a client certificate, and for the
# tests' failure cases another CA, a server certificate for another name and an expired one.
make_certs() {
  [[ -f "$tls/expired.pem" ]] && return 0
  command -v openssl >/dev/null || { log "openssl is needed for the TLS certificates"; return 1; }
  mkdir -p "$tls"
  local days=3650
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days $days -subj "/CN=amqp-swift test CA" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days $days -subj "/CN=another CA" 2>/dev/null
    sign() { # name subject san [extra x509 options]
      local name=$1 subject=$2 san=$3
      shift 3
      openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subject" 2>/dev/null
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$name.pem" \
        -extfile "$name.ext" "$@" 2>/dev/null
      rm -f "$name.csr" "$name.ext"
    }
    sign server "/CN=localhost" "DNS:localhost,IP:127.0.0.1" -days $days
    sign client "/CN=$client_user" "DNS:$client_user" -days $days
    sign wrong-name "/CN=wrong.example" "DNS:wrong.example" -days $days
    # Expired: valid for a day, ten years ago (openssl ca sets the dates explicitly).
    openssl req -newkey rsa:2048 -nodes -keyout expired.key -out expired.csr -subj "/CN=localhost" 2>/dev/null
    mkdir -p ca-db && : >ca-db/index.txt && echo 01 >ca-db/serial
    cat >ca-db/ca.conf <<CA
[ca]
default_ca = test
[test]
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
default_md = sha256
policy = any
copy_extensions = none
x509_extensions = server
[any]
commonName = supplied
[server]
subjectAltName = DNS:localhost,IP:127.0.0.1
CA
    openssl ca -batch -config ca-db/ca.conf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \
      -startdate 20150101000000Z -enddate 20150102000000Z -notext 2>/dev/null
    rm -rf expired.csr ca-db
    chmod 644 ./*.key  # the broker runs as this user; the keys are for tests only
    chmod 600 client.key  # only the client reads it (the client warns about a key others can read)
  )
  log "made test certificates in $tls"
}

start_local() {
  ensure_package
  make_certs
  mkdir -p "$state/mnesia" "$state/log" "$state/home"
  echo "[rabbitmq_auth_mechanism_ssl]." >"$state/enabled_plugins"
  cat >"$state/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$port
listeners.ssl.default = 127.0.0.1:$tls_port
ssl_options.cacertfile = $tls/ca.pem
ssl_options.certfile = $tls/server.pem
ssl_options.keyfile = $tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
loopback_users.guest = true
log.console = false
log.file.level = info
CONF
  local_env
  # Debian's package may have started its own node through the init system; it would hold the port.
  log "starting a local RabbitMQ node ($node) on 127.0.0.1:$port (TLS $tls_port), data in $state"
  /usr/lib/rabbitmq/bin/rabbitmq-server -detached
  echo local >"$state/started-by"
  wait_for_amqp
  ctl await_startup >/dev/null
  add_certificate_user
}

# The user that SASL EXTERNAL logs in as: no password, all permissions on /.
add_certificate_user() {
  ctl list_users 2>/dev/null | grep -q "^$client_user" && return 0
  ctl add_user "$client_user" "unused-$RANDOM$RANDOM" >/dev/null
  ctl clear_password "$client_user" >/dev/null
  ctl set_permissions -p / "$client_user" ".*" ".*" ".*" >/dev/null
}

start_docker() {
  make_certs
  log "starting RabbitMQ with docker compose"
  docker compose -f "$root/docker-compose.yml" up -d --wait
  mkdir -p "$state"
  echo docker >"$state/started-by"
  wait_for_amqp
  add_certificate_user
}

case "${1:-}" in
  start)
    if [[ "${2:-}" == "--own" ]]; then
      if [[ "$(cat "$state/started-by" 2>/dev/null || true)" == local ]] && amqp_answers; then
        log "reusing this script's own node on 127.0.0.1:$port"
        exit 0
      fi
      if amqp_answers || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        log "127.0.0.1:$port is taken by something this script did not start; set AMQP_PORT to a free port"
        exit 1
      fi
      start_local
      log "RabbitMQ is ready on amqp://guest:guest@127.0.0.1:$port/"
      exit 0
    fi
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
  certs)
    make_certs
    ;;
  *)
    echo "usage: $0 start|stop|status|certs|ctl ARGS..." >&2
    exit 2
    ;;
esac
