#!/usr/bin/env bash
# `make demo`: the whole fleet on the local stack, as processes.
#
# Installs what is missing, builds, brings the stack up and provisions
# topics and schemas; then `sluice-demo` (the fleet harness's demo scenario,
# services/tools/demo) starts the sandbox and every service, pushes a stream
# through the outbox and ingest with poison, ERP refusals, 500s, a burst of
# 429s and a 10 s ERP outage, reconciles every event, and checks what an
# operator looks at. The fleet keeps running for the URLs it prints;
# `make demo-down` stops it and the stack.
#
#   demo.sh        run the demo (stopping a previous run's fleet first)
#   demo.sh check  run it and stop the fleet after (what `make test` does)
#   demo.sh down   stop the fleet and the stack
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$SLUICE_ROOT/deploy/local"
DEMO="$SLUICE_LOCAL/demo"
cd "$SLUICE_ROOT"

stop_fleet() {
  [[ -f "$DEMO/pids" ]] || return 0
  while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done < "$DEMO/pids"
  while read -r pid; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done < "$DEMO/pids"
  rm -f "$DEMO/pids"
}

mode="${1:-run}"
case "$mode" in
  down) stop_fleet; bash "$HERE/stack.sh" down; exit 0 ;;
  run|check) ;;
  *) die "usage: demo.sh [run|check|down]" ;;
esac

bash "$HERE/prerequisites.sh"
log "building"
build_binaries
bash "$HERE/stack.sh" up
set -a
# shellcheck source=/dev/null
source "$STACK_ENV"
set +a
stop_fleet
[[ "$mode" == check ]] && trap stop_fleet EXIT
rm -rf "$DEMO/logs"
mkdir -p "$DEMO"

echo "== provisioning topics and schemas (schemas/topics.toml)"
./target/debug/sluice-provision apply --replication-factor 1
PGOPTIONS='-c client_min_messages=warning' bash "$HERE/postgres.sh" psql -q \
  -f services/fleet/outbox-relay/migrations/0001_outbox.sql

# The fleet, the stream, the report and the checks: the fleet harness's
# demo scenario (services/tools/demo).
args=(--work-dir "$DEMO")
[[ "$mode" == check ]] && args+=(--check)
./target/debug/sluice-demo "${args[@]}"
