#!/usr/bin/env bash
# Schemathesis against a real ingest on the local stack: every route of
# /openapi.json with generated, negative and boundary data and stateful
# sequences, authenticated with a real token, for a time budget.
#   fuzz.sh [SECONDS]   (default 60)
# Passes when no response is a 5xx and none contradicts the document. One
# check is left out: positive_data_acceptance expects every schema-valid
# body to be accepted, but an event's payload is checked against its Avro
# contract, which JSON Schema in the document does not carry (the 400 names
# the field).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$SLUICE_ROOT/deploy/local"
BUDGET="${1:-60}"
VENV="$SLUICE_LOCAL/fuzz-venv"
REQUIREMENTS="$HERE/fuzz/requirements.txt"
DIR="$SLUICE_LOCAL/fuzz"

python_venv "$VENV" "$REQUIREMENTS"

set -a; source "$STACK_ENV"; set +a
rm -rf "$DIR"; mkdir -p "$DIR"
"$SLUICE_ROOT/target/debug/sluice-provision" apply >"$DIR/provision.log" 2>&1 \
  || { cat "$DIR/provision.log" >&2; die "provisioning failed"; }

token="fuzz-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
api="$(free_port)"; health="$(free_port)"
SLUICE_INGEST_TOKEN_SHA256="$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" \
  SLUICE_INGEST_LISTEN="127.0.0.1:$api" SLUICE_HTTP_LISTEN="127.0.0.1:$health" \
  SLUICE_LOG="warn,rdkafka=error" \
  "$SLUICE_ROOT/target/debug/ingest" >"$DIR/ingest.log" 2>&1 &
echo $! > "$DIR/ingest.pid"
trap 'stop_pid "$DIR/ingest.pid" 10' EXIT
wait_for 60 "ingest" curl -sf "http://127.0.0.1:$health/readyz"

log "schemathesis for ${BUDGET}s against ingest on 127.0.0.1:$api"
cd "$DIR"
"$VENV/bin/st" run "http://127.0.0.1:$api/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-time "$BUDGET" --workers 2 --seed 20261203 \
  --report junit --report-dir "$DIR/report" 2>&1 | tee "$DIR/schemathesis.txt" | tail -40
status="${PIPESTATUS[0]}"
pid_alive "$DIR/ingest.pid" || die "ingest died during the run; see $DIR/ingest.log"
exit "$status"
