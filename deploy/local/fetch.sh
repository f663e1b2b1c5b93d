#!/usr/bin/env bash
# Fetches the Kafka jars and the Apicurio Registry distribution from Maven
# Central into .local/dist. Maven caches downloads in ~/.m2, so a fresh clone
# on a machine that fetched them before only copies.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Runs a goal of the fetch pom quietly; its output is shown only on failure.
maven() {
  mkdir -p "$SLUICE_DIST"
  mvn -B -f "$SLUICE_ROOT/deploy/local/pom.xml" -Dkafka.version="$KAFKA_VERSION" "$@" >"$SLUICE_DIST/maven.log" 2>&1 \
    || { cat "$SLUICE_DIST/maven.log" >&2; die "maven $1 failed"; }
}

fetch_kafka() {
  local dest="$SLUICE_DIST/kafka-$KAFKA_VERSION"
  [[ -f "$dest/.complete" ]] && return 0
  log "fetching Apache Kafka $KAFKA_VERSION jars"
  rm -rf "$dest"
  maven dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dest/libs"
  touch "$dest/.complete"
}

fetch_apicurio() {
  local dest="$SLUICE_DIST/apicurio-$APICURIO_VERSION"
  [[ -f "$dest/.complete" ]] && return 0
  log "fetching Apicurio Registry $APICURIO_VERSION"
  rm -rf "$dest"
  mkdir -p "$dest"
  maven dependency:copy -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
    -DoutputDirectory="$dest"
  tar -xzf "$dest/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz" -C "$dest"
  rm "$dest/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz"
  touch "$dest/.complete"
}

command -v mvn >/dev/null || die "mvn not found (install maven)"
fetch_kafka
fetch_apicurio
