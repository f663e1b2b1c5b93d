#!/usr/bin/env bash
# `make test`: everything CI checks, on a fresh machine or a used one.
# Installs what is missing, builds once, checks the Helm chart and the
# compose file, starts the local stack unless it already runs (then leaves it
# running), runs every test against it, schemathesis against ingest, and
# every benchmark scaled down,
# runs the demo end to end (its report checked against the sandbox and the
# topics), runs the fleet from the Helm chart's rendered objects on both
# values files (chart-run.sh), stops what it started, and runs the chaos smoke
# (deploy/local/chaos.sh smoke) on a stack of its own.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$SLUICE_ROOT/deploy/local"
cd "$SLUICE_ROOT"

bash "$HERE/prerequisites.sh"
# The jars, Jaeger, helm and the virtualenvs come beside the build: on a
# fresh machine their downloads wait on the network while rustc has the cores.
log "fetching and building the servers and tools, beside the build ($SLUICE_LOCAL/tools.log)"
mkdir -p "$SLUICE_LOCAL"
bash "$HERE/tools.sh" >"$SLUICE_LOCAL/tools.log" 2>&1 &
tools=$!

# A clean build writes about 10 GB to target/; a full disk shows up as a
# linker killed by SIGBUS (seen in CI), so say it first.
free_gb=$(df -Pk "$SLUICE_ROOT" | awk 'NR == 2 { print int($4 / 1048576) }')
if ((free_gb < 12)); then
  log "WARNING: $free_gb GB free on the disk of $SLUICE_ROOT; a clean build needs about 10 GB"
fi

# CI builds a clean clone once: incremental compilation's state (4 GB of it
# in target/debug/incremental) is written for builds that never come.
export CARGO_INCREMENTAL=0

log "checking formatting and lints"
cargo fmt --all --check
# Build before the servers start: the 2 cores go to rustc, not to idle JVMs.
log "building"
cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
wait "$tools" || { cat "$SLUICE_LOCAL/tools.log" >&2; die "fetching or building the servers and tools failed"; }
cat "$SLUICE_LOCAL/tools.log" >&2
log "checking the Helm chart, the compose file, the alert rules and the configuration reference"
bash "$HERE/chart.sh"
docker-compose -f docker-compose.yml config -q
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml
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
# Every step runs even when one before it failed; the last lines name those
# that failed, so that the tail of a CI log says where to look.
failed=()
step() {
  local name="$1"
  shift
  "$@" || failed+=("$name (exit $?)")
}
step "cargo test" bash -c 'set -o pipefail; cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$1"' _ "$results"

log "schemathesis against ingest's /openapi.json (fuzz.sh): no 5xx, no answer the document does not allow"
step "fuzz.sh" bash "$HERE/fuzz.sh" 60

log "every benchmark at 2 % of its size (bench.sh smoke): each runs beside its reference"
step "bench.sh smoke" bash "$HERE/bench.sh" smoke

log "the demo, end to end, its report checked against the sandbox and the topics"
step "demo.sh check" bash "$HERE/demo.sh" check

log "the chart-run: the fleet as the Helm chart renders it (default values; production values over TLS), a stream reconciled"
step "chart-run.sh" bash "$HERE/chart-run.sh"

if [[ "$started_stack" == true ]]; then
  bash "$HERE/stack.sh" down
  trap - EXIT
fi
# The chaos run scaled down, on a stack of its own (.local/chaos), after the
# shared one has stopped: the two never compete for the 2 cores.
log "the chaos run, scaled down, on a three-node Kafka cluster: SIGKILLs of services, brokers and Postgres, a node cut off, API storms"
step "chaos.sh smoke" bash "$HERE/chaos.sh" smoke
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "cargo test: %d passed, %d failed\n", passed, failed }' "$results"
# A test binary that dies without its result line (a signal, an abort at exit).
grep -E "process didn't exit successfully|^error: test failed" "$results" || true
if ((${#failed[@]})); then
  printf 'make test failed: %s\n' "${failed[@]}"
  exit 1
fi
echo "make test passed"
