#!/usr/bin/env bash
# Apache Kafka in KRaft mode: one node acting as broker and controller, or
# with SLUICE_KAFKA_NODES=3 a cluster of three such nodes (a three-voter
# controller quorum: any one node may die). The chaos run uses the cluster.
#   kafka.sh start | stop | status | restart
#   kafka.sh kill N              SIGKILL node N (1-based), no shutdown at all
#   kafka.sh start-node N        start node N again with its data and ports
#   kafka.sh restart-node N      stop node N gracefully and start it again
#   kafka.sh pause N | resume N  SIGSTOP / SIGCONT node N (cut off, then back)
#   kafka.sh perf-test ARGS...   Kafka's own producer benchmark
#                                (org.apache.kafka.tools.ProducerPerformance)
#   kafka.sh consumer-perf-test ARGS...
#                                its consumer benchmark (ConsumerPerformance)
#   kafka.sh topics ARGS...      the topic tool (TopicCommand)
#   kafka.sh console-producer ARGS...
#                                its console producer (ConsoleProducer)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$SLUICE_LOCAL/kafka"
LIBS="$SLUICE_DIST/kafka-$KAFKA_VERSION/libs"
# The cluster's size: SLUICE_KAFKA_NODES, else the size its endpoint file
# records (so `stack.sh down` stops every node of a cluster), else 1.
NODES="${SLUICE_KAFKA_NODES:-$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_NODES)}"
NODES="${NODES:-1}"
[[ "$NODES" == 1 || "$NODES" == 3 ]] || die "SLUICE_KAFKA_NODES must be 1 or 3, got $NODES"
# Bounded so that the brokers, the registry and the tests share 2 cores and
# leave memory for cargo; raise it with SLUICE_KAFKA_HEAP for benchmarks.
if [[ "$NODES" == 1 ]]; then HEAP="${SLUICE_KAFKA_HEAP:-768m}"; else HEAP="${SLUICE_KAFKA_HEAP:-512m}"; fi

JVM_OPTS=(-Xms256m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -Dlog4j2.configurationFile="$DIR/log4j2.properties" -cp "$LIBS/*")

kafka_java() { "$(java_bin)" "${JVM_OPTS[@]}" "$@"; }

# A SCRAM user on the SASL listeners (the plain one takes OAUTHBEARER too),
# so SASL settings are tested for real; SSL and SASL_SSL listeners serve the
# stack's throwaway certificate, so TLS settings are too.
SCRAM_USER=sluice
SCRAM_PASSWORD=sluice-scram-secret
# Every node's listeners, in this order, in its ports.env.
LISTENERS=(PLAINTEXT CONTROLLER SASL_PLAINTEXT SSL SASL_SSL)

node_dir() { echo "$DIR/node-$1"; }
node_pidfile() { echo "$(node_dir "$1")/kafka.pid"; }
node_port() { env_get "$(node_dir "$1")/ports.env" "$2"; }
check_node() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= NODES )) || die "no node '$1' (nodes 1..$NODES)"; }

# Comma-separated host:port of listener $1 on every node.
bootstrap_of() {
  local i list=()
  for i in $(seq 1 "$NODES"); do list+=("127.0.0.1:$(node_port "$i" "$1")"); done
  (IFS=,; echo "${list[*]}")
}

# Ports for every node, all new and all distinct.
choose_ports() {
  local taken=() i name port
  for i in $(seq 1 "$NODES"); do
    mkdir -p "$(node_dir "$i")"
    for name in "${LISTENERS[@]}"; do
      port="$(port_other_than "${taken[@]}")"
      taken+=("$port")
      echo "$name=$port"
    done > "$(node_dir "$i")/ports.env"
  done
}

# True when every node has its ports recorded and none is taken by another
# process (the cluster can come back on them, with its data).
ports_reusable() {
  local i name port
  for i in $(seq 1 "$NODES"); do
    for name in "${LISTENERS[@]}"; do
      port="$(node_port "$i" "$name")"
      [[ -n "$port" ]] && ! port_in_use "$port" || return 1
    done
  done
}

# A free port that is none of the ports given (chosen but not yet bound).
port_other_than() {
  local port
  while port="$(free_port)"; do
    [[ " $* " == *" $port "* ]] || { echo "$port"; return 0; }
  done
}

write_config() {
  local i="$1" dir voters=() n
  dir="$(node_dir "$i")"
  for n in $(seq 1 "$NODES"); do voters+=("$n@127.0.0.1:$(node_port "$n" CONTROLLER)"); done
  local plain ctrl sasl ssl sasl_ssl
  plain="$(node_port "$i" PLAINTEXT)"; ctrl="$(node_port "$i" CONTROLLER)"; sasl="$(node_port "$i" SASL_PLAINTEXT)"
  ssl="$(node_port "$i" SSL)"; sasl_ssl="$(node_port "$i" SASL_SSL)"
  # Internal topics as replicated as the cluster allows, and on three nodes
  # two replicas in sync for any write (the group offsets' topic has no
  # setting of its own): a transaction or an offset survives any one node
  # dying. Topics sluice-provision creates carry their own.
  local rf=$(( NODES < 3 ? NODES : 3 )) min_isr=$(( NODES < 3 ? 1 : 2 ))
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$(IFS=,; echo "${voters[*]}")
listeners=PLAINTEXT://127.0.0.1:$plain,CONTROLLER://127.0.0.1:$ctrl,SASL_PLAINTEXT://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl,SASL_SSL://127.0.0.1:$sasl_ssl
advertised.listeners=PLAINTEXT://127.0.0.1:$plain,SASL_PLAINTEXT://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl,SASL_SSL://127.0.0.1:$sasl_ssl
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
ssl.keystore.type=PEM
ssl.keystore.location=$DIR/server-keystore.pem
sasl.enabled.mechanisms=SCRAM-SHA-512,OAUTHBEARER
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
# OAUTHBEARER with Kafka's unsecured validator (alg "none" tokens): the
# tests' token endpoint hands librdkafka's OIDC client such a token, so the
# client side (client id and secret, token fetching) is tested for real.
listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
log.dirs=$dir/data
num.partitions=3
# Topics are provisioned from the contracts, never made by a typo.
auto.create.topics.enable=false
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
min.insync.replicas=$min_isr
group.initial.rebalance.delay.ms=0
PROPS
}

write_shared_files() {
  # The TLS listeners serve the stack's throwaway certificate (tls.sh): its
  # key and chain in one PEM file, as Kafka's PEM keystore takes them.
  cat "$SLUICE_LOCAL/tls/server.key" "$SLUICE_LOCAL/tls/server.pem" > "$DIR/server-keystore.pem"
  chmod 600 "$DIR/server-keystore.pem"
  cat > "$DIR/log4j2.properties" <<'PROPS'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
PROPS
  { echo "SLUICE_KAFKA_BOOTSTRAP=$(bootstrap_of PLAINTEXT)"
    echo "SLUICE_KAFKA_NODES=$NODES"
    echo "SLUICE_KAFKA_SASL_BOOTSTRAP=$(bootstrap_of SASL_PLAINTEXT)"
    echo "SLUICE_KAFKA_SSL_BOOTSTRAP=$(bootstrap_of SSL)"
    echo "SLUICE_KAFKA_SASL_SSL_BOOTSTRAP=$(bootstrap_of SASL_SSL)"
    echo "SLUICE_KAFKA_SCRAM_USER=$SCRAM_USER"
    echo "SLUICE_KAFKA_SCRAM_PASSWORD=$SCRAM_PASSWORD"; } > "$DIR/endpoint.env"
}

node_alive() { pid_alive "$(node_pidfile "$1")"; }
any_alive() { local i; for i in $(seq 1 "$NODES"); do node_alive "$i" && return 0; done; return 1; }
node_ready() { kcat -b "127.0.0.1:$(node_port "$1" PLAINTEXT)" -L -m 3 >/dev/null 2>&1; }
# Every node registered with the cluster.
cluster_ready() {
  [[ "$(kcat -b "$(bootstrap_of PLAINTEXT)" -L -m 3 2>/dev/null | sed -n 's/^ *\([0-9]*\) brokers:$/\1/p')" == "$NODES" ]]
}

launch_node() {
  local i="$1" dir
  dir="$(node_dir "$i")"
  write_config "$i"
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    kafka_java kafka.tools.StorageTool format -t "$(cat "$DIR/cluster.id")" -c "$dir/server.properties" \
      --ignore-formatted >"$dir/format.log" 2>&1 || die "formatting node $i's storage failed; see $dir/format.log"
  fi
  log "starting kafka $KAFKA_VERSION node $i on 127.0.0.1:$(node_port "$i" PLAINTEXT)"
  nohup "$(java_bin)" "${JVM_OPTS[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 &
  echo $! > "$(node_pidfile "$i")"
}

start() {
  mkdir -p "$DIR"
  [[ -d "$LIBS" ]] || die "kafka jars missing; run deploy/local/fetch.sh"
  [[ -f "$SLUICE_LOCAL/tls/server.pem" ]] || die "no server certificate in $SLUICE_LOCAL/tls; run deploy/local/tls.sh make"
  # A broker of the one-folder layout an older kafka.sh wrote goes; so does
  # a cluster of another size.
  if [[ -f "$DIR/kafka.pid" ]]; then stop_pid "$DIR/kafka.pid" 30; rm -rf "$DIR/data"; fi
  if [[ "$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_NODES)" != "$NODES" ]]; then
    local old; for old in "$DIR"/node-*/kafka.pid; do [[ -f "$old" ]] && stop_pid "$old" 30; done
    rm -rf "$DIR"/node-* "$DIR/cluster.id"
  fi
  if ! any_alive; then
    # Keep the ports (and so the data) of an earlier run when they are
    # still free; otherwise every node starts afresh on new ones.
    if ! ports_reusable; then
      choose_ports
      rm -rf "$DIR"/node-*/data
    fi
    [[ -f "$DIR/cluster.id" ]] || kafka_java kafka.tools.StorageTool random-uuid > "$DIR/cluster.id"
  fi
  write_shared_files
  local i
  for i in $(seq 1 "$NODES"); do node_alive "$i" || launch_node "$i"; done
  wait_for 120 "kafka ($NODES node(s))" cluster_ready || die "kafka did not answer metadata in 120s; see $DIR/node-*/kafka.log"
  # Idempotent: sets the user's SCRAM credential whether or not it exists.
  kafka_java kafka.admin.ConfigCommand --bootstrap-server "$(bootstrap_of PLAINTEXT)" --alter \
    --entity-type users --entity-name "$SCRAM_USER" \
    --add-config "SCRAM-SHA-512=[iterations=4096,password=$SCRAM_PASSWORD]" >"$DIR/scram.log" 2>&1 \
    || die "creating the SCRAM user failed; see $DIR/scram.log"
  write_stack_env
}

# SIGTERM to every node at once, then waiting on each: stopped one by one,
# the last would wait for a controller quorum that is gone.
stop() {
  local i pid
  # A broker of the one-folder layout an older kafka.sh wrote.
  [[ -f "$DIR/kafka.pid" ]] && stop_pid "$DIR/kafka.pid" 30
  for i in $(seq 1 "$NODES"); do
    node_alive "$i" || continue
    pid="$(cat "$(node_pidfile "$i")")"
    # A paused node takes no SIGTERM until it runs again.
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  for i in $(seq 1 "$NODES"); do stop_pid "$(node_pidfile "$i")" 30; done
}

status() {
  local i
  for i in $(seq 1 "$NODES"); do
    if node_alive "$i"; then
      echo "kafka $i   running  pid $(cat "$(node_pidfile "$i")")  127.0.0.1:$(node_port "$i" PLAINTEXT)"
    else
      echo "kafka $i   stopped"
    fi
  done
}

# SIGKILL: the node dies as on a power cut, with nothing flushed or handed over.
kill_node() {
  check_node "$1"
  node_alive "$1" || die "node $1 is not running"
  kill -KILL "$(cat "$(node_pidfile "$1")")"
  rm -f "$(node_pidfile "$1")"
}

start_node() {
  check_node "$1"
  node_alive "$1" && { log "node $1 already runs"; return 0; }
  launch_node "$1"
  wait_for 120 "kafka node $1" node_ready "$1" || die "node $1 did not answer in 120s; see $(node_dir "$1")/kafka.log"
  wait_for 60 "kafka node $1 back in the cluster" cluster_ready || die "node $1 did not rejoin in 60s"
}

signal_node() {
  check_node "$2"
  node_alive "$2" || die "node $2 is not running"
  kill "-$1" "$(cat "$(node_pidfile "$2")")"
}

# Kafka's own tool $1 against the cluster, with a bounded heap.
tool() {
  local class="$1"; shift
  [[ -n "$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_BOOTSTRAP)" ]] || die "kafka is not running; start the stack first"
  "$(java_bin)" -Xms128m -Xmx512m -cp "$LIBS/*" -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
    "org.apache.kafka.tools.$class" --bootstrap-server "$(bootstrap_of PLAINTEXT)" "$@"
}

# The reference for `make bench`: the broker's produce throughput and latency
# measured by Kafka's own tool, from the same artifacts.
perf_test() {
  [[ -n "$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_BOOTSTRAP)" ]] || die "kafka is not running; start the stack first"
  "$(java_bin)" -Xms128m -Xmx512m -cp "$LIBS/*" -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
    org.apache.kafka.tools.ProducerPerformance "$@" \
    --producer-props "bootstrap.servers=$(bootstrap_of PLAINTEXT)" acks=all enable.idempotence=true \
    linger.ms=5 compression.type=lz4
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  kill) kill_node "${2:-}" ;;
  start-node) start_node "${2:-}" ;;
  restart-node)
    check_node "${2:-}"
    node_alive "$2" && { kill -CONT "$(cat "$(node_pidfile "$2")")" 2>/dev/null || true; }
    stop_pid "$(node_pidfile "$2")" 30
    start_node "$2" ;;
  pause) signal_node STOP "${2:-}" ;;
  resume) signal_node CONT "${2:-}" ;;
  perf-test) shift; perf_test "$@" ;;
  consumer-perf-test) shift; tool ConsumerPerformance "$@" ;;
  topics) shift; tool TopicCommand "$@" ;;
  console-producer) shift; tool ConsoleProducer "$@" ;;
  *) die "usage: kafka.sh start|stop|restart|status|kill N|start-node N|restart-node N|pause N|resume N|perf-test ARGS|consumer-perf-test ARGS|topics ARGS|console-producer ARGS" ;;
esac
