#!/usr/bin/env bash
# `make bench`: every benchmark, each against its reference in the same run.
#   bench.sh         full size, release build; results in bench-results/,
#                    then docs/BENCHMARKS.md written from them
#   bench.sh smoke   every benchmark at 2 % of its size on the debug build,
#                    results under .local/bench-smoke (make test: they run,
#                    their references run, their checks hold)
# Uses the local stack that runs, starting it when none does (and leaving it
# up, like make stack-up).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$SLUICE_ROOT/deploy/local"
cd "$SLUICE_ROOT"

case "${1:-full}" in
  full)
    profile=(--release); bench_profile=()
    unset SLUICE_BENCH_SCALE SLUICE_BENCH_RESULTS ;;
  smoke)
    profile=(); bench_profile=(--profile dev)
    export SLUICE_BENCH_SCALE=0.02 SLUICE_BENCH_RESULTS="$SLUICE_LOCAL/bench-smoke" ;;
  *) die "usage: bench.sh [full|smoke]" ;;
esac

# The code measured, named in docs/BENCHMARKS.md (taken now: the tree may
# change while the run goes on).
if [[ "${1:-full}" == full ]]; then
  mkdir -p bench-results
  # The pages a previous run wrote are its output, not the code measured.
  outputs=(':!docs/BENCHMARKS.md' ':!docs/saga-curve.png')
  version="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  git diff --quiet HEAD -- . "${outputs[@]}" 2>/dev/null || version="$version-dirty"
  echo "$version" > bench-results/code-version
fi

bash "$HERE/prerequisites.sh"
bash "$HERE/stack.sh" up
bash "$HERE/connect.sh" fetch
bash "$HERE/streams.sh" build
# The saga benchmark runs these binaries beside its own.
build_binaries "${profile[@]}"
# The end-to-end benchmark runs the shipped topology, whose topics and
# schemas the deployment provisions (ingest registers none): on a stack
# started afresh, nothing else has.
target="$SLUICE_ROOT/target/$([[ "${1:-full}" == full ]] && echo release || echo debug)"
(set -a; source "$STACK_ENV"; set +a; "$target/sluice-provision" apply --replication-factor 1 > /dev/null) \
  || die "provisioning the local stack failed"
# The whole workspace selected (build_binaries says why); one bench runs.
bench() { cargo bench --locked "${bench_profile[@]}" --workspace --bench "$1"; }

bash "$HERE/bench-broker.sh"
bench relay
bench debezium
bench transformer
bench sheets
bench erp
bench saga
bench latency
if [[ "${1:-full}" == full ]]; then
  bash "$HERE/bench-report.sh"
fi
