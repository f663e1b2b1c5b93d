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

# Jaeger is built from source through the Go module proxy, in a throwaway
# module (its own go.mod has replace directives, which `go install pkg@v`
# refuses). Go caches modules and builds, so a fresh clone rebuilds fast.
fetch_jaeger() {
  local dest="$SLUICE_DIST/jaeger-$JAEGER_VERSION"
  [[ -x "$dest/jaeger" ]] && return 0
  command -v go >/dev/null || die "go not found (install Go 1.24 or newer)"
  log "building Jaeger $JAEGER_VERSION from the Go module proxy"
  local module="$SLUICE_DIST/jaeger-src"
  rm -rf "$module"; mkdir -p "$module" "$dest"
  (
    cd "$module"
    go mod init sluice.local/jaeger
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@v$JAEGER_VERSION"
    go build -o "$dest/jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
  ) >"$SLUICE_DIST/jaeger-build.log" 2>&1 || { cat "$SLUICE_DIST/jaeger-build.log" >&2; die "building jaeger failed"; }
  mv "$dest/jaeger.tmp" "$dest/jaeger"
}

command -v mvn >/dev/null || die "mvn not found (install maven)"
fetch_kafka
fetch_apicurio
fetch_jaeger
