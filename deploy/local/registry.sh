#!/usr/bin/env bash
# Apicurio Registry, stored in the local Postgres (so schema ids outlive a
# restart), serving the Confluent-compatible API under /apis/ccompat/v7, over
# HTTP and over HTTPS with the stack's throwaway certificate.
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
  if pid_alive "$PIDFILE" && [[ -z "$(env_get "$DIR/endpoint.env" SLUICE_SCHEMA_REGISTRY_TLS_URL)" ]]; then
    log "registry (pid $(cat "$PIDFILE")) runs without HTTPS (started by an older stack.sh); restarting it"
    stop_pid "$PIDFILE" 20
  fi
  if pid_alive "$PIDFILE"; then
    wait_for 60 "registry" ready && return 0
    log "registry (pid $(cat "$PIDFILE")) runs but does not answer; replacing it"
    stop_pid "$PIDFILE" 10
  fi
  [[ -f "$DIST/.complete" ]] || die "registry missing; run deploy/local/fetch.sh"
  rm -f "$PIDFILE"

  local jdbc_url; jdbc_url="$(env_get "$SLUICE_LOCAL/postgres/endpoint.env" SLUICE_REGISTRY_JDBC_URL)"
  [[ -n "$jdbc_url" ]] || die "postgres must run before the registry (it stores the schemas)"
  # Same port as before when it is free, so addresses handed out stay good.
  local port; port="$(url)"; port="${port#http://127.0.0.1:}"; port="${port%%/*}"
  if [[ -z "$port" ]] || port_in_use "$port"; then port="$(free_port)"; fi
  # HTTPS beside HTTP, with the stack's throwaway certificate (tls.sh).
  local tls_port; tls_port="$(env_get "$DIR/endpoint.env" SLUICE_SCHEMA_REGISTRY_TLS_URL)"
  tls_port="${tls_port#https://127.0.0.1:}"; tls_port="${tls_port%%/*}"
  if [[ -z "$tls_port" || "$tls_port" == "$port" ]] || port_in_use "$tls_port"; then
    tls_port="$(free_port)"
    while [[ "$tls_port" == "$port" ]]; do tls_port="$(free_port)"; done
  fi
  local tls="$SLUICE_LOCAL/tls"
  [[ -f "$tls/server.pem" ]] || die "no server certificate in $tls; run deploy/local/tls.sh make"
  { echo "SLUICE_SCHEMA_REGISTRY_URL=http://127.0.0.1:$port/apis/ccompat/v7"
    echo "SLUICE_SCHEMA_REGISTRY_TLS_URL=https://127.0.0.1:$tls_port/apis/ccompat/v7"; } > "$DIR/endpoint.env"
  log "starting apicurio registry $APICURIO_VERSION on 127.0.0.1:$port (HTTPS on $tls_port)"
  nohup "$(java_bin)" -Xms128m -Xmx"$HEAP" \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
    -Dquarkus.http.ssl-port="$tls_port" -Dquarkus.http.insecure-requests=enabled \
    -Dquarkus.http.ssl.certificate.files="$tls/server.pem" \
    -Dquarkus.http.ssl.certificate.key-files="$tls/server.key" \
    -Dquarkus.http.access-log.enabled=false \
    -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=postgresql \
    -Dapicurio.datasource.url="$jdbc_url" \
    -Dapicurio.datasource.username=sluice -Dapicurio.datasource.password=sluice \
    -jar "$DIST/apicurio-registry-app-$APICURIO_VERSION-runner.jar" >>"$DIR/registry.log" 2>&1 &
  echo $! > "$PIDFILE"
  wait_for 90 "registry" ready || die "registry did not answer in 90s; see $DIR/registry.log"
  write_stack_env
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
