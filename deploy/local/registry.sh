#!/usr/bin/env bash
# Apicurio Registry (in-memory storage), serving the Confluent-compatible
# schema registry API under /apis/ccompat/v7.
#   registry.sh start | stop | status | restart
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$SLUICE_LOCAL/registry"
PIDFILE="$DIR/registry.pid"
DIST="$SLUICE_DIST/apicurio-$APICURIO_VERSION"
HEAP="${SLUICE_REGISTRY_HEAP:-384m}"

url() { env_get "$DIR/endpoint.env" SLUICE_SCHEMA_REGISTRY_URL; }
ready() { [[ -n "$(url)" ]] && curl -sf "$(url)/subjects" >/dev/null; }

start() {
  mkdir -p "$DIR"
  if pid_alive "$PIDFILE"; then
    wait_for 60 "registry" ready || die "registry (pid $(cat "$PIDFILE")) runs but does not answer; see $DIR/registry.log"
    return 0
  fi
  [[ -f "$DIST/.complete" ]] || die "registry missing; run deploy/local/fetch.sh"
  rm -f "$PIDFILE"

  local port; port="$(free_port)"
  echo "SLUICE_SCHEMA_REGISTRY_URL=http://127.0.0.1:$port/apis/ccompat/v7" > "$DIR/endpoint.env"
  log "starting apicurio registry $APICURIO_VERSION on 127.0.0.1:$port"
  nohup "$(java_bin)" -Xms128m -Xmx"$HEAP" \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
    -Dquarkus.http.access-log.enabled=false \
    -jar "$DIST/apicurio-registry-app-$APICURIO_VERSION-runner.jar" >>"$DIR/registry.log" 2>&1 &
  echo $! > "$PIDFILE"
  wait_for 90 "registry" ready || die "registry did not answer in 90s; see $DIR/registry.log"
}

stop() { stop_pid "$PIDFILE" 20; }

status() {
  if pid_alive "$PIDFILE"; then echo "registry  running  pid $(cat "$PIDFILE")  $(url)"
  else echo "registry  stopped"; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  *) die "usage: registry.sh start|stop|restart|status" ;;
esac
