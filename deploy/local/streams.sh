#!/usr/bin/env bash
# The Kafka Streams application the transformer is benchmarked against
# (`make bench`): deploy/local/peers/kafka-streams, built with Maven into
# .local/dist, run on the machine's Java 17.
#   streams.sh build
#   streams.sh run BOOTSTRAP REGISTRY_URL INPUT OUTPUT APPLICATION_ID   (foreground)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PEER="$SLUICE_ROOT/deploy/local/peers/kafka-streams"
OUT="$SLUICE_DIST/kafka-streams-$KAFKA_VERSION"
HEAP="${SLUICE_STREAMS_HEAP:-768m}"

build() {
  local stamp; stamp="$(cat "$PEER/pom.xml" "$PEER"/src/main/java/dev/sluice/bench/*.java | sha256sum | cut -c1-16)"
  [[ -f "$OUT/.built-$stamp" ]] && return 0
  log "building the Kafka Streams peer ($KAFKA_VERSION)"
  rm -rf "$OUT"
  mkdir -p "$OUT"
  mvn -B -f "$PEER/pom.xml" -Dkafka.version="$KAFKA_VERSION" -Dstreams.build="$OUT/build" \
    -Dmaven.test.skip=true package dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$OUT/libs" >"$OUT/maven.log" 2>&1 \
    || { cat "$OUT/maven.log" >&2; die "building the Kafka Streams peer failed"; }
  cp "$OUT/build/sluice-bench-kafka-streams-0.jar" "$OUT/libs/"
  touch "$OUT/.built-$stamp"
}

run() {
  build
  exec "$(java_bin)" -Xms256m -Xmx"$HEAP" -XX:+UseG1GC -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$OUT/libs/*" dev.sluice.bench.RequestRows "$@"
}

case "${1:-}" in
  build) build ;;
  run) shift; run "$@" ;;
  *) die "usage: streams.sh build | run BOOTSTRAP REGISTRY_URL INPUT OUTPUT APPLICATION_ID" ;;
esac
