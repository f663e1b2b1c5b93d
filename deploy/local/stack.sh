#!/usr/bin/env bash
# The local stack: Kafka (KRaft), PostgreSQL (TLS from tls.sh's throwaway CA),
# the schema registry, Jaeger.
#   stack.sh up      fetch what is missing, start what is not running, write .local/stack.env
#   stack.sh down    stop everything (data stays in .local/ for the next up)
#   stack.sh status  what runs where
#   stack.sh clean   down, then remove the data directories
#   stack.sh running exit 0 when all servers run
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$SLUICE_ROOT/deploy/local"

up() {
  bash "$HERE/fetch.sh"
  bash "$HERE/tls.sh" make
  bash "$HERE/postgres.sh" start
  bash "$HERE/kafka.sh" start
  bash "$HERE/registry.sh" start
  bash "$HERE/jaeger.sh" start
  write_stack_env
  log "stack is up; addresses in $STACK_ENV"
}

down() {
  bash "$HERE/jaeger.sh" stop
  bash "$HERE/registry.sh" stop
  bash "$HERE/kafka.sh" stop
  bash "$HERE/postgres.sh" stop
  rm -f "$STACK_ENV"
}

status() {
  bash "$HERE/postgres.sh" status
  bash "$HERE/kafka.sh" status
  bash "$HERE/registry.sh" status
  bash "$HERE/jaeger.sh" status
  [[ -f "$STACK_ENV" ]] && echo "env file  $STACK_ENV"
}

clean() {
  down
  rm -rf "$SLUICE_LOCAL/kafka" "$SLUICE_LOCAL/postgres" "$SLUICE_LOCAL/registry" "$SLUICE_LOCAL/jaeger"
}

running() {
  [[ -f "$STACK_ENV" ]] && bash "$HERE/postgres.sh" status | grep -q running \
    && [[ "$(bash "$HERE/kafka.sh" status)" != *stopped* ]] && bash "$HERE/registry.sh" status | grep -q running \
    && bash "$HERE/jaeger.sh" status | grep -q running
}

case "${1:-}" in
  up) up ;;
  running) running ;;
  down) down ;;
  status) status ;;
  clean) clean ;;
  *) die "usage: stack.sh up|down|status|clean|running" ;;
esac
