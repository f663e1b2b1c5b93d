#!/usr/bin/env bash
# Apache Kafka, one KRaft node acting as broker and controller.
#   kafka.sh start | stop | status | restart
#   kafka.sh perf-test ARGS...   Kafka's own producer benchmark
#                                (org.apache.kafka.tools.ProducerPerformance)
#   kafka.sh consumer-perf-test ARGS...
#                                its consumer benchmark (ConsumerPerformance)
#   kafka.sh topics ARGS...      the topic tool (TopicCommand)
#   kafka.sh console-producer ARGS...
#                                its console producer (ConsoleProducer)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$SLUICE_LOCAL/kafka"
PIDFILE="$DIR/kafka.pid"
LIBS="$SLUICE_DIST/kafka-$KAFKA_VERSION/libs"
# Bounded so that the broker, the registry and the tests share 2 cores and
# leave memory for cargo; raise it with SLUICE_KAFKA_HEAP for benchmarks.
HEAP="${SLUICE_KAFKA_HEAP:-768m}"

JVM_OPTS=(-Xms256m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -Dlog4j2.configurationFile="$DIR/log4j2.properties" -cp "$LIBS/*")

kafka_java() { "$(java_bin)" "${JVM_OPTS[@]}" "$@"; }

# A SCRAM user on the SASL listeners (the plain one takes OAUTHBEARER too),
# so SASL settings are tested for real; SSL and SASL_SSL listeners serve the
# stack's throwaway certificate, so TLS settings are too.
SCRAM_USER=sluice
SCRAM_PASSWORD=sluice-scram-secret

write_config() {
  local broker_port="$1" controller_port="$2" sasl_port="$3" ssl_port="$4" sasl_ssl_port="$5"
  # The TLS listeners serve the stack's throwaway certificate (tls.sh): its
  # key and chain in one PEM file, as Kafka's PEM keystore takes them.
  cat "$SLUICE_LOCAL/tls/server.key" "$SLUICE_LOCAL/tls/server.pem" > "$DIR/server-keystore.pem"
  chmod 600 "$DIR/server-keystore.pem"
  cat > "$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$broker_port,CONTROLLER://127.0.0.1:$controller_port,SASL_PLAINTEXT://127.0.0.1:$sasl_port,SSL://127.0.0.1:$ssl_port,SASL_SSL://127.0.0.1:$sasl_ssl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$broker_port,SASL_PLAINTEXT://127.0.0.1:$sasl_port,SSL://127.0.0.1:$ssl_port,SASL_SSL://127.0.0.1:$sasl_ssl_port
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
log.dirs=$DIR/data
num.partitions=3
# Topics are provisioned from schemas/topics.yaml, never made by a typo.
auto.create.topics.enable=false
# One node: internal topics cannot have more replicas than that.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
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
  { echo "SLUICE_KAFKA_BOOTSTRAP=127.0.0.1:$broker_port"
    echo "SLUICE_KAFKA_CONTROLLER_PORT=$controller_port"
    echo "SLUICE_KAFKA_SASL_BOOTSTRAP=127.0.0.1:$sasl_port"
    echo "SLUICE_KAFKA_SSL_BOOTSTRAP=127.0.0.1:$ssl_port"
    echo "SLUICE_KAFKA_SASL_SSL_BOOTSTRAP=127.0.0.1:$sasl_ssl_port"
    echo "SLUICE_KAFKA_SCRAM_USER=$SCRAM_USER"
    echo "SLUICE_KAFKA_SCRAM_PASSWORD=$SCRAM_PASSWORD"; } > "$DIR/endpoint.env"
}

# A free port that is none of the ports given (chosen but not yet bound).
port_other_than() {
  local port
  while port="$(free_port)"; do
    [[ " $* " == *" $port "* ]] || { echo "$port"; return 0; }
  done
}

ready() { kcat -b "$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_BOOTSTRAP)" -L -m 3 >/dev/null 2>&1; }

start() {
  mkdir -p "$DIR"
  if pid_alive "$PIDFILE" && [[ -z "$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_SSL_BOOTSTRAP)" ]]; then
    log "kafka (pid $(cat "$PIDFILE")) runs without the TLS listeners (started by an older stack.sh); restarting it"
    stop_pid "$PIDFILE" 30
  fi
  if pid_alive "$PIDFILE"; then
    ready && { log "kafka already runs (pid $(cat "$PIDFILE"))"; return 0; }
    wait_for 60 "kafka" ready && return 0
    log "kafka (pid $(cat "$PIDFILE")) runs but does not answer metadata; replacing it"
    stop_pid "$PIDFILE" 10
  fi
  [[ -d "$LIBS" ]] || die "kafka jars missing; run deploy/local/fetch.sh"
  rm -f "$PIDFILE"

  # Keep the ports (and so the data) of an earlier run when they are still
  # free; a leftover that holds them was cleaned up by stop already.
  local broker_port controller_port sasl_port ssl_port sasl_ssl_port
  broker_port="$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_BOOTSTRAP)"; broker_port="${broker_port##*:}"
  controller_port="$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_CONTROLLER_PORT)"
  sasl_port="$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_SASL_BOOTSTRAP)"; sasl_port="${sasl_port##*:}"
  if [[ -z "$broker_port" || -z "$controller_port" ]] || port_in_use "$broker_port" || port_in_use "$controller_port"; then
    broker_port="$(free_port)"; controller_port="$(free_port)"
    [[ "$broker_port" != "$controller_port" ]] || controller_port="$(free_port)"
    rm -rf "$DIR/data"
  fi
  if [[ -z "$sasl_port" ]] || port_in_use "$sasl_port"; then
    sasl_port="$(free_port)"
  fi
  ssl_port="$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_SSL_BOOTSTRAP)"; ssl_port="${ssl_port##*:}"
  if [[ -z "$ssl_port" ]] || port_in_use "$ssl_port"; then
    ssl_port="$(port_other_than "$broker_port" "$controller_port" "$sasl_port")"
  fi
  sasl_ssl_port="$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_SASL_SSL_BOOTSTRAP)"; sasl_ssl_port="${sasl_ssl_port##*:}"
  if [[ -z "$sasl_ssl_port" ]] || port_in_use "$sasl_ssl_port"; then
    sasl_ssl_port="$(port_other_than "$broker_port" "$controller_port" "$sasl_port" "$ssl_port")"
  fi
  [[ -f "$SLUICE_LOCAL/tls/server.pem" ]] || die "no server certificate in $SLUICE_LOCAL/tls; run deploy/local/tls.sh make"
  write_config "$broker_port" "$controller_port" "$sasl_port" "$ssl_port" "$sasl_ssl_port"

  if [[ ! -f "$DIR/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid)"
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$DIR/server.properties" --ignore-formatted >"$DIR/format.log" 2>&1 \
      || die "formatting kafka storage failed; see $DIR/format.log"
  fi

  log "starting kafka $KAFKA_VERSION on 127.0.0.1:$broker_port"
  nohup "$(java_bin)" "${JVM_OPTS[@]}" kafka.Kafka "$DIR/server.properties" >>"$DIR/kafka.log" 2>&1 &
  echo $! > "$PIDFILE"
  wait_for 90 "kafka" ready || die "kafka did not answer metadata in 90s; see $DIR/kafka.log"
  # Idempotent: sets the user's SCRAM credential whether or not it exists.
  kafka_java kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$broker_port" --alter \
    --entity-type users --entity-name "$SCRAM_USER" \
    --add-config "SCRAM-SHA-512=[iterations=4096,password=$SCRAM_PASSWORD]" >"$DIR/scram.log" 2>&1 \
    || die "creating the SCRAM user failed; see $DIR/scram.log"
  write_stack_env
}

stop() { stop_pid "$PIDFILE" 30; }

status() {
  if pid_alive "$PIDFILE"; then
    echo "kafka     running  pid $(cat "$PIDFILE")  $(env_get "$DIR/endpoint.env" SLUICE_KAFKA_BOOTSTRAP)"
  else
    echo "kafka     stopped"
  fi
}

# The reference for `make bench`: the broker's produce throughput and latency
# measured by Kafka's own tool, from the same artifacts.
perf_test() {
  local bootstrap
  bootstrap="$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_BOOTSTRAP)"
  [[ -n "$bootstrap" ]] || die "kafka is not running; start the stack first"
  "$(java_bin)" -Xms128m -Xmx512m -cp "$LIBS/*" -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
    org.apache.kafka.tools.ProducerPerformance "$@" \
    --producer-props "bootstrap.servers=$bootstrap" acks=all enable.idempotence=true \
    linger.ms=5 compression.type=lz4
}

# Kafka's own tool $1 against the broker, with a bounded heap.
tool() {
  local class="$1"; shift
  local bootstrap
  bootstrap="$(env_get "$DIR/endpoint.env" SLUICE_KAFKA_BOOTSTRAP)"
  [[ -n "$bootstrap" ]] || die "kafka is not running; start the stack first"
  "$(java_bin)" -Xms128m -Xmx512m -cp "$LIBS/*" -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
    "org.apache.kafka.tools.$class" --bootstrap-server "$bootstrap" "$@"
}

case "${1:-}" in
  start) start ;;
  perf-test) shift; perf_test "$@" ;;
  consumer-perf-test) shift; tool ConsumerPerformance "$@" ;;
  topics) shift; tool TopicCommand "$@" ;;
  console-producer) shift; tool ConsoleProducer "$@" ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  *) die "usage: kafka.sh start|stop|restart|status|perf-test ARGS|consumer-perf-test ARGS|topics ARGS|console-producer ARGS" ;;
esac
