# Sourced by broker.sh and cluster.sh: the environment of one local RabbitMQ node from Debian's
# package, bound to 127.0.0.1, its data under its own directory.
#
#   rabbitmq_node_env NODENAME PORT DATA_DIR HOME_DIR
#
# Erlang distribution listens on $BROKER_DIST_PORT, else PORT + 20000; HOME holds the Erlang cookie, so nodes that share
# it (and rabbitmqctl) trust each other.
rabbitmq_node_env() {
  local name=$1 port=$2 dir=$3 home=$4
  export RABBITMQ_NODENAME="$name"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="$port"
  export RABBITMQ_DIST_PORT="${BROKER_DIST_PORT:-$((port + 20000))}"
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE="$dir/mnesia"
  export RABBITMQ_LOG_BASE="$dir/log"
  export RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
  export RABBITMQ_CONFIG_FILE="$dir/rabbitmq"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export HOME="$home"
}
