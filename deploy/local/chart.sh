#!/usr/bin/env bash
# Checks the Helm chart (helm/sluice) the way CI does: helm lint, helm
# template with the default values and with a production-like values file,
# every rendered object validated against the Kubernetes API schemas
# (kubernetes-validate), every credential mounted as a file
# (chart/secrets.py), and kube-score on the production rendering with no
# critical finding. helm and kube-score are built from the Go module proxy
# into .local/bin; kubernetes-validate comes from PyPI into .local/chart-venv.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLUICE_ROOT"

KUBERNETES_VERSION=1.31
CHART=helm/sluice
BIN="$SLUICE_LOCAL/bin"
VENV="$SLUICE_LOCAL/chart-venv"
OUT="$SLUICE_LOCAL/chart"

mkdir -p "$OUT"
chart_tools

log "helm lint"
"$BIN/helm" lint --strict "$CHART"
"$BIN/helm" lint --strict "$CHART" -f "$CHART/values-production.yaml"

for values in default production; do
  args=()
  [[ "$values" == production ]] && args=(-f "$CHART/values-production.yaml")
  rendered="$OUT/$values.yaml"
  "$BIN/helm" template sluice "$CHART" --namespace sluice --kube-version "$KUBERNETES_VERSION.0" "${args[@]}" > "$rendered"
  log "helm template ($values values): $(grep -c '^kind:' "$rendered") objects"
  # Objects of CRDs (ServiceMonitor, KEDA's ScaledObject and TriggerAuthentication) have no schema in
  # the Kubernetes API: a warning; everything else must validate.
  "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" "$rendered"
done

log "credentials reach the containers as mounted files, never as environment values (every secret of the values set)"
"$BIN/helm" template sluice "$CHART" --namespace sluice --kube-version "$KUBERNETES_VERSION.0" \
  -f "$CHART/values-production.yaml" \
  --set kafka.ssl.keyPasswordSecret.name=kafka-tls \
  --set kafka.ssl.keystorePasswordSecret.name=kafka-tls \
  --set kafka.oauthbearer.clientSecretSecret.name=kafka-oidc \
  --set-json 'extraVolumes=[{"name":"private-ca","configMap":{"name":"private-ca"}}]' \
  --set-json 'extraVolumeMounts=[{"name":"private-ca","mountPath":"/etc/sluice/ca","readOnly":true}]' \
  > "$OUT/secrets.yaml"
"$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" "$OUT/secrets.yaml"
grep -q 'mountPath: /etc/sluice/ca' "$OUT/secrets.yaml" || die "extraVolumeMounts are not mounted"
"$VENV/bin/python" "$SLUICE_ROOT/deploy/local/chart/secrets.py" "$OUT/secrets.yaml"

log "KEDA: your own TriggerAuthentication sets sasl and tls (KEDA refuses both places); OAUTHBEARER needs one"
"$BIN/helm" template sluice "$CHART" --namespace sluice --kube-version "$KUBERNETES_VERSION.0" -f "$CHART/values-production.yaml" \
  --set kafka.keda.authenticationRef=team-kafka > "$OUT/keda-own.yaml"
grep -q 'name: team-kafka' "$OUT/keda-own.yaml" || die "the ScaledObjects do not name kafka.keda.authenticationRef"
! grep -qE '^ +(sasl|tls): ' "$OUT/keda-own.yaml" || die "trigger metadata sets sasl or tls beside your TriggerAuthentication"
! grep -q '^kind: TriggerAuthentication' "$OUT/keda-own.yaml" || die "the chart made a TriggerAuthentication beside yours"
oauth=(--set-json 'kafka.properties=["security.protocol=SASL_SSL","sasl.mechanism=OAUTHBEARER","sasl.oauthbearer.method=oidc"]')
if refused=$("$BIN/helm" template sluice "$CHART" --kube-version "$KUBERNETES_VERSION.0" -f "$CHART/values-production.yaml" "${oauth[@]}" 2>&1); then
  die "OAUTHBEARER rendered a KEDA trigger without a TriggerAuthentication of yours"
fi
grep -q 'set kafka.keda.authenticationRef' <<<"$refused" || die "OAUTHBEARER without authenticationRef: $refused"
"$BIN/helm" template sluice "$CHART" --kube-version "$KUBERNETES_VERSION.0" -f "$CHART/values-production.yaml" "${oauth[@]}" \
  --set kafka.keda.authenticationRef=team-kafka > "$OUT/oauth.yaml"
# OIDC logins reach the identity provider: every egress policy opens kafkaOauth's port.
egress=$(grep -cE '^  name: .*-egress$' "$OUT/oauth.yaml")
oauth_rules=$(grep -c '^    # kafkaOauth$' "$OUT/oauth.yaml" || true)
((egress > 0 && oauth_rules == egress)) || die "OAUTHBEARER: $oauth_rules of $egress egress policies reach the token endpoint"

log "Workload Identity: no key secret mounts no key file (sheets-sink asks the metadata server), and only sheets-sink may act as the Google account"
grep -q 'SLUICE_SHEETS_SERVICE_ACCOUNT' "$OUT/default.yaml" || die "the default values mount no Google key"
google='{"iam.gke.io/gcp-service-account":"sheets@project.iam.gserviceaccount.com"}'
"$BIN/helm" template sluice "$CHART" --namespace sluice --kube-version "$KUBERNETES_VERSION.0" \
  --set services.sheetsSink.serviceAccountSecret.name= \
  --set-json "services.sheetsSink.serviceAccount.annotations=$google" \
  > "$OUT/workload-identity.yaml"
"$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" "$OUT/workload-identity.yaml"
! grep -q 'SLUICE_SHEETS_SERVICE_ACCOUNT' "$OUT/workload-identity.yaml" || die "a key file is configured without a key secret"
"$VENV/bin/python" "$SLUICE_ROOT/deploy/local/chart/identity.py" "$OUT/workload-identity.yaml" sheets-sink
# The shared account annotated would give every service the Google account.
if refused=$("$BIN/helm" template sluice "$CHART" --kube-version "$KUBERNETES_VERSION.0" \
  --set services.sheetsSink.serviceAccountSecret.name= --set-json "serviceAccount.annotations=$google" 2>&1); then
  die "serviceAccount.annotations with a Google account rendered: every service would act as it"
fi
grep -q 'services.sheetsSink.serviceAccount' <<<"$refused" || die "the shared account's Google annotation refused without saying where it goes: $refused"

log "your own contracts (contracts.files): every pod and the provisioning Job read them, a change rolls the pods"
contracts="$SLUICE_ROOT/deploy/local/chart/contracts.py"
"$VENV/bin/python" "$contracts" values schemas > "$OUT/contracts.values.json"
render_contracts() { # values file → rendered
  "$BIN/helm" template sluice "$CHART" --namespace sluice --kube-version "$KUBERNETES_VERSION.0" \
    -f "$CHART/values-production.yaml" -f "$1"
}
render_contracts "$OUT/contracts.values.json" > "$OUT/contracts.yaml"
"$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" "$OUT/contracts.yaml"
"$VENV/bin/python" "$contracts" check "$OUT/contracts.yaml" schemas
before=$(grep -m1 'checksum/contracts' "$OUT/contracts.yaml")
"$VENV/bin/python" - "$OUT/contracts.values.json" > "$OUT/contracts-changed.values.json" <<'PY'
import json, sys
values = json.load(open(sys.argv[1]))
values["contracts"]["files"]["topics.toml"] += "\n# changed\n"
print(json.dumps(values))
PY
render_contracts "$OUT/contracts-changed.values.json" > "$OUT/contracts-changed.yaml"
after=$(grep -m1 'checksum/contracts' "$OUT/contracts-changed.yaml")
[[ "$before" != "$after" ]] || die "a changed contract leaves the pods' checksum as it was: they would not roll"
# A file added keeps the others' keys: a pod of the previous revision still
# finds its files in the ConfigMap during the rollout.
"$VENV/bin/python" - "$OUT/contracts.values.json" > "$OUT/contracts-added.values.json" <<'PY'
import json, sys
values = json.load(open(sys.argv[1]))
values["contracts"]["files"]["aaa/First.avsc"] = values["contracts"]["files"]["orders/OrderEvent.avsc"]
print(json.dumps(values))
PY
render_contracts "$OUT/contracts-added.values.json" > "$OUT/contracts-added.yaml"
keys() { grep -o 'key: [^ ]*' "$1" | grep -v aaa_First | sort -u; }
[[ "$(keys "$OUT/contracts.yaml")" == "$(keys "$OUT/contracts-added.yaml")" ]] || die "adding a contract file changed the other files' ConfigMap keys"
if refused=$("$BIN/helm" template sluice "$CHART" --kube-version "$KUBERNETES_VERSION.0" \
  --set-file 'contracts.files.orders/OrderEvent\.avsc=schemas/orders/OrderEvent.avsc' 2>&1); then
  die "contracts without topics.toml rendered"
fi
grep -q 'contracts.files needs topics.toml' <<<"$refused" || die "contracts without topics.toml refused without saying so: $refused"
if refused=$("$BIN/helm" template sluice "$CHART" --kube-version "$KUBERNETES_VERSION.0" \
  --set-file 'contracts.files.topics\.toml=schemas/topics.toml' --set-file 'contracts.files.\.\./x\.avsc=schemas/orders/OrderEvent.avsc' 2>&1); then
  die "a contracts path out of the directory (../x.avsc) rendered"
fi
grep -q "'../x.avsc' does not match pattern" <<<"$refused" || die "a contracts path out of the directory refused without naming it: $refused"

log "a saga of your own (services.sagaOrchestrator.saga): mounted, named by SLUICE_SAGA_FILE, a change rolls its pods"
render_saga() { # saga file → the saga-orchestrator's objects
  "$BIN/helm" template sluice "$CHART" --kube-version "$KUBERNETES_VERSION.0" \
    --show-only templates/saga-orchestrator.yaml --set-file "services.sagaOrchestrator.saga=$1"
}
shipped_saga="$SLUICE_ROOT/services/fleet/saga-orchestrator/sagas/order-fulfilment.toml"
render_saga "$shipped_saga" > "$OUT/saga.yaml"
grep -q 'value: /etc/sluice/saga/saga.toml' "$OUT/saga.yaml" || die "the saga's pods are not told where its file is (SLUICE_SAGA_FILE)"
grep -q 'mountPath: /etc/sluice/saga' "$OUT/saga.yaml" || die "the saga file is not mounted"
grep -q 'starts_on = "OrderPlaced"' "$OUT/saga.yaml" || die "the saga file's content is not in its ConfigMap"
{ cat "$shipped_saga"; echo "# changed"; } > "$OUT/saga-changed.toml"
[[ "$(grep -m1 'checksum/config' "$OUT/saga.yaml")" != "$(render_saga "$OUT/saga-changed.toml" | grep -m1 'checksum/config')" ]] ||
  die "a changed saga leaves the orchestrator's checksum as it was: its pods would not roll"

log "kube-score (production values)"
# Warnings stay warnings; a critical finding fails.
if ! "$BIN/kube-score" score --output-format ci "$OUT/production.yaml" > "$OUT/kube-score.txt"; then
  grep '^\[CRITICAL\]' "$OUT/kube-score.txt" >&2 || true
  die "kube-score found critical issues (all findings: $OUT/kube-score.txt)"
fi
log "kube-score: no critical finding, $(grep -c '^\[WARNING\]' "$OUT/kube-score.txt") warnings ($OUT/kube-score.txt)"
