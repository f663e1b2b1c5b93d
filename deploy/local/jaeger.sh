#!/usr/bin/env bash
# Jaeger all-in-one with in-memory storage: OTLP/HTTP in, the query API out,
# both on loopback ports of their own.
#   jaeger.sh start | stop | status | restart
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$SLUICE_LOCAL/jaeger"
PIDFILE="$DIR/jaeger.pid"
BIN="$SLUICE_DIST/jaeger-$JAEGER_VERSION/jaeger"

query_url() { env_get "$DIR/endpoint.env" SLUICE_JAEGER_QUERY_URL; }
ready() { [[ -n "$(query_url)" ]] && curl -sf "$(query_url)/api/services" >/dev/null; }

start() {
  mkdir -p "$DIR"
  if pid_alive "$PIDFILE"; then
    wait_for 30 "jaeger" ready && return 0
    log "jaeger (pid $(cat "$PIDFILE")) runs but does not answer; replacing it"
    stop_pid "$PIDFILE" 10
  fi
  [[ -x "$BIN" ]] || die "jaeger missing; run deploy/local/fetch.sh"
  rm -f "$PIDFILE"
  local otlp query grpc health
  otlp="$(free_port)"; query="$(free_port)"; grpc="$(free_port)"; health="$(free_port)"
  # The tests read a trace back right after making it, so the store keeps
  # the last 10 000: full at 100 000, Jaeger's garbage collector kept 0.13
  # of the 2 cores busy while nothing was sent (seen with perf after a
  # benchmark; 0.00 empty), a share taken from every later test.
  cat > "$DIR/config.yaml" <<YAML
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:$health
  jaeger_query:
    storage:
      traces: memory
    http:
      endpoint: 127.0.0.1:$query
    grpc:
      endpoint: 127.0.0.1:$grpc
  jaeger_storage:
    backends:
      memory:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$otlp
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memory
YAML
  {
    echo "SLUICE_OTLP_ENDPOINT=http://127.0.0.1:$otlp"
    echo "SLUICE_JAEGER_QUERY_URL=http://127.0.0.1:$query"
  } > "$DIR/endpoint.env"
  log "starting jaeger $JAEGER_VERSION: OTLP on 127.0.0.1:$otlp, query on 127.0.0.1:$query"
  GOMAXPROCS=1 GOMEMLIMIT=256MiB nohup "$BIN" --config "$DIR/config.yaml" >>"$DIR/jaeger.log" 2>&1 &
  echo $! > "$PIDFILE"
  wait_for 30 "jaeger" ready || die "jaeger did not answer in 30s; see $DIR/jaeger.log"
  write_stack_env
}

stop() { stop_pid "$PIDFILE" 10; }

status() {
  if pid_alive "$PIDFILE"; then echo "jaeger    running  pid $(cat "$PIDFILE")  $(query_url)"
  else echo "jaeger    stopped"; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  *) die "usage: jaeger.sh start|stop|restart|status" ;;
esac
