#!/usr/bin/env bash
# Kafka Connect in standalone mode with Debezium's PostgreSQL connector: the
# reference outbox-relay is benchmarked against (`make bench`).
#   connect.sh fetch                         the jars, from Maven Central, into .local/dist
#   connect.sh run WORKER.properties CONNECTOR.properties
#                                            the worker, in the foreground
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LIBS="$SLUICE_DIST/connect-$KAFKA_VERSION-debezium-$DEBEZIUM_VERSION/libs"
HEAP="${SLUICE_CONNECT_HEAP:-768m}"

fetch() {
  [[ -f "$LIBS/../.complete" ]] && return 0
  log "fetching Kafka Connect $KAFKA_VERSION and Debezium $DEBEZIUM_VERSION"
  rm -rf "$LIBS"
  mkdir -p "$LIBS"
  mvn -B -f "$SLUICE_ROOT/deploy/local/peers/debezium/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    -Ddebezium.version="$DEBEZIUM_VERSION" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$LIBS" >"$LIBS/../maven.log" 2>&1 \
    || { cat "$LIBS/../maven.log" >&2; die "fetching Kafka Connect and Debezium failed"; }
  touch "$LIBS/../.complete"
}

run() {
  fetch
  local worker="$1" connector="$2"
  cat > "$(dirname "$worker")/log4j2.properties" <<'PROPS'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = STDOUT
PROPS
  exec "$(java_bin)" -Xms256m -Xmx"$HEAP" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$(dirname "$worker")/log4j2.properties" -cp "$LIBS/*" \
    org.apache.kafka.connect.cli.ConnectStandalone "$worker" "$connector"
}

case "${1:-}" in
  fetch) fetch ;;
  run) shift; run "$@" ;;
  *) die "usage: connect.sh fetch | run WORKER.properties CONNECTOR.properties" ;;
esac
