#!/usr/bin/env bash
# The chart-run (part of `make test`): the fleet started from what the Helm
# chart renders — every Deployment's and StatefulSet's replicas as
# processes with the command, arguments, environment and mounted files of
# the rendered objects, after its provisioning Job — on the running local
# stack, with a stream pushed through it and reconciled (sluice-chart-run,
# services/tools/demo). Twice: the default values over plaintext, and the
# production-like values over SASL_SSL, HTTPS and Postgres verify-full,
# with the contracts brought as a values file (contracts.files). The
# first also runs Debian's prometheus and prometheus-postgres-exporter
# against the fleet: every dashboard query returns series, and an ERP
# outage, a filling DLQ and stopped relays each make their alert pending.
# Needs the stack up, the workspace built and helm built (chart.sh).
#
#   chart-run.sh [default|production]   one of the two (both by default)
#
# With SLUICE_CHART_RUN_IMAGE=<tag> (`make image` sets it), every pod runs
# in a container of that image under podman instead, with its volumes
# bound where the pod sees them and the chart's security context (user,
# read-only root, no capabilities); host networking, as the stack listens
# on loopback.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLUICE_ROOT"

[[ -x "$SLUICE_LOCAL/bin/helm" ]] || die "helm is not built: run deploy/local/chart.sh"
fleet_on_the_stack

run() { # name, transport, extra flag, values files…
  local name="$1" transport="$2" extra="$3"
  shift 3
  local args=(--transport "$transport" --work-dir "$SLUICE_LOCAL/chart-run/$name" $extra)
  [[ -n "${SLUICE_CHART_RUN_IMAGE:-}" ]] && args+=(--image "$SLUICE_CHART_RUN_IMAGE")
  for values in "$@"; do args+=(--values "$values"); done
  rm -rf "$SLUICE_LOCAL/chart-run/$name"
  log "chart-run: $name values over $transport"
  ./target/debug/sluice-chart-run "${args[@]}"
}

# The default run also checks the alerts and dashboards against a real
# Prometheus (--alerts): an ERP outage, a filling DLQ, the relays stopped.
default() { run default plaintext --alerts helm/sluice/values.yaml; }
# The production run brings its contracts and its saga as a user does
# (contracts.files, services.sagaOrchestrator.saga; here the shipped ones):
# every pod and the Job read them from the mounts.
production() {
  local contracts="$SLUICE_LOCAL/chart-run/contracts.values.json"
  local saga="$SLUICE_LOCAL/chart-run/saga.values.json"
  mkdir -p "$SLUICE_LOCAL/chart-run"
  python3 deploy/local/chart/contracts.py values schemas > "$contracts"
  python3 -c 'import json, sys; print(json.dumps({"services": {"sagaOrchestrator": {"saga": open(sys.argv[1]).read()}}}))' \
    services/fleet/saga-orchestrator/sagas/order-fulfilment.toml > "$saga"
  run production tls "" helm/sluice/values.yaml helm/sluice/values-production.yaml "$contracts" "$saga"
}
if [[ -n "${SLUICE_CHART_RUN_IMAGE:-}" ]]; then
  remove_harness_containers
  trap remove_harness_containers EXIT
fi
case "${1:-both}" in
  default) default ;;
  production) production ;;
  both) default; production ;;
  *) die "usage: chart-run.sh [default|production]" ;;
esac
