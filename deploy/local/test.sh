#!/usr/bin/env bash
# `make test`: everything CI checks, on a fresh machine or a used one.
# Installs what is missing, builds once, checks the Helm chart and the
# compose file, starts the local stack unless it already runs (then leaves it
# running), runs every test against it and every benchmark scaled down,
# runs the demo end to end (its report checked against the sandbox and the
# topics), stops what it started, and runs the chaos smoke
# (deploy/local/chaos.sh smoke) on a stack of its own.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$SLUICE_ROOT/deploy/local"
cd "$SLUICE_ROOT"

bash "$HERE/prerequisites.sh"
bash "$HERE/interop.sh"

log "checking formatting and lints"
cargo fmt --all --check
# Build before the servers start: the 2 cores go to rustc, not to idle JVMs.
log "building"
cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
log "checking the Helm chart, the compose file and the configuration reference"
bash "$HERE/chart.sh"
docker-compose -f docker-compose.yml config -q
bash "$HERE/config-reference.sh" --check

started_stack=false
if bash "$HERE/stack.sh" running; then
  log "using the stack that already runs"
else
  trap 'bash "$HERE/stack.sh" down' EXIT
  bash "$HERE/stack.sh" up
  started_stack=true
fi

log "testing"
results="$SLUICE_LOCAL/test-output.txt"
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$results" || status=$?

log "every benchmark at 2 % of its size (bench.sh smoke): each runs beside its reference"
bash "$HERE/bench.sh" smoke || status=$?

log "the demo, end to end, its report checked against the sandbox and the topics"
bash "$HERE/demo.sh" check || status=$?

if [[ "$started_stack" == true ]]; then
  bash "$HERE/stack.sh" down
  trap - EXIT
fi
# The chaos run scaled down, on a stack of its own (.local/chaos), after the
# shared one has stopped: the two never compete for the 2 cores.
log "the chaos run, scaled down: SIGKILLs, a broker and a Postgres restart, API storms"
bash "$HERE/chaos.sh" smoke || status=$?
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "cargo test: %d passed, %d failed\n", passed, failed }' "$results"
exit "$status"
