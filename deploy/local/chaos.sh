#!/usr/bin/env bash
# `make chaos`: the whole fleet under fire on a stack of its own, then every
# source event reconciled (sluice-chaos, services/tools/chaos).
#
#   chaos.sh        the full run: 200 000 events, 5 000 sagas, every service
#                   SIGKILLed 5 times; Kafka nodes restarted, SIGKILLed (the
#                   partition leaders' and the transaction coordinator's)
#                   and cut off; Postgres SIGKILLed and restarted; API
#                   storms; release build; report in bench-results/chaos.md,
#                   copied into docs/RELIABILITY.md when it passes
#   chaos.sh smoke  the same, scaled down, on the debug build (make test)
#
# The stack lives in .local/chaos (its data wiped at every run, so topics
# hold this run alone), Kafka as a cluster of three nodes with every topic
# replicated three times, two replicas in sync for a write; the downloaded
# servers are shared with .local/.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export SLUICE_LOCAL="$ROOT/.local/chaos" SLUICE_KAFKA_NODES=3
source "$ROOT/deploy/local/lib.sh"
HERE="$SLUICE_ROOT/deploy/local"
cd "$SLUICE_ROOT"

mode="${1:-full}"
case "$mode" in
  full)
    profile=(--release); bin=target/release; report=bench-results/chaos.md
    scale=() ;;
  smoke)
    profile=(); bin=target/debug; report="$SLUICE_LOCAL/smoke.md"
    # Slow enough that the servers' faults, one at a time, fall in the load.
    scale=(--events 4200 --sagas 200 --rate 40 --kills-per-service 1 --poison 2 --refuse-every 20 --settle-secs 300) ;;
  *) die "usage: chaos.sh [full|smoke]" ;;
esac

bash "$HERE/prerequisites.sh"
log "building (${profile[*]:-debug})"
build_binaries "${profile[@]}"

# A fleet left by a run whose harness was SIGKILLed: only our binaries.
if [[ -f "$SLUICE_LOCAL/run/pids" ]]; then
  while read -r pid; do
    case "$(ps -o comm= -p "$pid" 2>/dev/null)" in
      sandbox|ingest|outbox-relay|transformer|sheets-sink|erp-sink|saga-orchestra*) kill -KILL "$pid" ;;
    esac
  done < "$SLUICE_LOCAL/run/pids"
fi
rm -rf "$SLUICE_LOCAL/run"
mkdir -p "$SLUICE_ROOT/.local/dist" "$SLUICE_LOCAL"
ln -sfn "$SLUICE_ROOT/.local/dist" "$SLUICE_DIST"
# A fresh stack: a leftover of an earlier run is stopped and its data wiped.
bash "$HERE/stack.sh" clean
trap 'bash "$HERE/stack.sh" down' EXIT
bash "$HERE/stack.sh" up
set -a
# shellcheck source=/dev/null
source "$STACK_ENV"
set +a
# Three replicas; min.insync.replicas follows (2).
"$bin/sluice-provision" apply --replication-factor 3 > /dev/null
PGOPTIONS='-c client_min_messages=warning' bash "$HERE/postgres.sh" psql -q \
  -f services/fleet/outbox-relay/migrations/0001_outbox.sql

status=0
code_version="$(git describe --always --dirty 2>/dev/null || echo unknown)"
"$bin/sluice-chaos" --bin-dir "$bin" --work-dir "$SLUICE_LOCAL/run" --out "$report" \
  --code-version "$code_version" "${scale[@]}" || status=$?

if [[ "$mode" == full && "$status" == 0 ]]; then
  # docs/RELIABILITY.md shows the last full run that passed, verbatim.
  doc=docs/RELIABILITY.md
  awk -v report="$report" '
    /<!-- chaos:begin -->/ { print; while ((getline line < report) > 0) print line; skip = 1; next }
    /<!-- chaos:end -->/ { skip = 0 }
    !skip' "$doc" > "$doc.tmp" && mv "$doc.tmp" "$doc"
  log "docs/RELIABILITY.md now shows this run"
fi
exit "$status"
