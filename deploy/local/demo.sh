#!/usr/bin/env bash
# `make demo`: the whole fleet on the local stack, as processes.
#
# Brings the stack up, provisions topics and schemas, starts the sandbox
# (Google Sheets and Odoo), ingest, outbox-relay, the transformer,
# sheets-sink, erp-sink, the saga orchestrator and its outbox-relay; then
# pushes a stream: orders committed with their outbox rows, orders and
# requests through ingest's HTTP API, poison (bytes that are not Avro, an
# outbox row that does not fit its contract), ERP refusals, 500s, a burst of
# 429s and a 10 s ERP outage. It waits for every saga to end and prints a
# report, each figure read from two places (the sandbox and the topics or
# Postgres) and checked to agree; then checks that every metric the
# dashboards and alert rules use is exported. The fleet keeps running for
# the URLs it prints; `make demo-down` stops it and the stack.
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

fail() { printf '\ndemo FAILED: %s\n' "$*" >&2; exit 1; }

bash "$HERE/prerequisites.sh"
log "building"
cargo build --locked -p sluice-provision -p sluice-ingest -p sluice-outbox-relay -p sluice-transformer -p sluice-sandbox \
  -p sluice-sheets-sink -p sluice-erp-sink -p sluice-saga-orchestrator -p sluice-dlq-replayer
bash "$HERE/stack.sh" up
set -a
# shellcheck source=/dev/null
source "$STACK_ENV"
set +a
stop_fleet
[[ "$mode" == check ]] && trap stop_fleet EXIT
mkdir -p "$DEMO/logs"
: > "$DEMO/pids"
: > "$DEMO/metrics"

# start NAME ARGS…: a fleet process, its log in $DEMO/logs, /metrics on a free port.
start() {
  local name="$1"; shift
  local port; port="$(free_port)"
  SLUICE_HTTP_LISTEN="127.0.0.1:$port" SLUICE_LOG="${SLUICE_LOG:-info,rdkafka=warn}" \
    "./target/debug/$@" > "$DEMO/logs/$name.log" 2>&1 &
  echo $! >> "$DEMO/pids"
  echo "$name http://127.0.0.1:$port" >> "$DEMO/metrics"
  wait_for 60 "$name" curl -sf "http://127.0.0.1:$port/readyz" \
    || fail "$name did not answer /readyz; its log says:"$'\n'"$(grep -A 3 '^Error:' "$DEMO/logs/$name.log" || tail -n 5 "$DEMO/logs/$name.log")"
}
psql_at() { bash "$HERE/postgres.sh" psql -qAt -c "$1"; }
json_put() { curl -sf -X PUT -H 'content-type: application/json' "$1" -d "$2" > /dev/null; }

echo "== provisioning topics and schemas (schemas/topics.toml)"
./target/debug/sluice-provision apply --replication-factor 1
PGOPTIONS='-c client_min_messages=warning' bash "$HERE/postgres.sh" psql -q \
  -f services/fleet/outbox-relay/migrations/0001_outbox.sql

echo
echo "== the fleet (logs in $DEMO/logs)"
sandbox_port="$(free_port)"
sandbox="http://127.0.0.1:$sandbox_port"
./target/debug/sandbox keygen --out "$DEMO/service-account.json" --token-uri "$sandbox/token" > /dev/null
SLUICE_LOG=warn ./target/debug/sandbox serve --listen "127.0.0.1:$sandbox_port" \
  --service-account "$DEMO/service-account.json" --spreadsheet sluice-demo=Orders,Requests \
  > "$DEMO/logs/sandbox.log" 2>&1 &
echo $! >> "$DEMO/pids"
wait_for 30 "the sandbox" curl -sf "$sandbox/admin/requests"
# Odoo refuses one customer's orders and fails 5 % of calls; Sheets answers
# its first three calls with 429 and Retry-After.
json_put "$sandbox/admin/faults/odoo" '{"reject_value": "Refused By The ERP", "error_rates": {"500": 0.05}}'
json_put "$sandbox/admin/faults/sheets" '{"burst_429": 3, "retry_after_secs": 1}'

token="demo-$RANDOM$RANDOM"
api_port="$(free_port)"
# The orchestrator first: it makes its outbox's slot before writing a row.
start saga-orchestrator saga-orchestrator run
start saga-outbox-relay outbox-relay --outbox-table saga.outbox --outbox-format addressed \
  --outbox-slot sluice_saga_outbox --outbox-publication sluice_saga_outbox
start outbox-relay outbox-relay
# The saga owns OrderPlaced; the shipped rules map the rest.
start transformer transformer --rules services/fleet/transformer/rules.toml \
  --transactional-id sluice-transformer-demo
start sheets-sink sheets-sink --service-account "$DEMO/service-account.json" --sheets-base-url "$sandbox"
# A partition held 3 s with commands waiting is named stalled (5m by
# default): the ERP outage below holds some.
start erp-sink erp-sink --odoo-url "$sandbox" --odoo-database sluice --odoo-login sluice \
  --odoo-password sandbox --requests-per-second 20 --breaker-open-secs 5 --retry-initial-ms 500 \
  --partition-stall-after 3s
SLUICE_INGEST_TOKEN_SHA256="$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" \
  SLUICE_INGEST_LISTEN="127.0.0.1:$api_port" start ingest ingest
# The business outbox's slot is made by its relay at start: wait for it.
relay_metrics="$(awk '$1 == "outbox-relay" {print $2}' "$DEMO/metrics")"
wait_for 30 "outbox-relay streaming" bash -c \
  "curl -sf $relay_metrics/metrics | grep -q '^sluice_outbox_streaming{.*} 1'"

run="d$(date +%H%M%S)"
started_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo
echo "== the stream (run $run)"
# 40 orders committed with their outbox rows, 10 per transaction; every
# tenth by the customer the ERP refuses.
for batch in 0 1 2 3; do
  bash "$HERE/postgres.sh" psql -q <<SQL
BEGIN;
INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload)
SELECT gen_random_uuid(), 'orders', format('order-$run-%s', lpad(i::text, 2, '0')), 'OrderPlaced',
       jsonb_build_object(
         'customer', jsonb_build_object('customer_id', 'c-' || i,
            'name', CASE WHEN i % 10 = 3 THEN 'Refused By The ERP' ELSE 'Customer ' || i END,
            'email', 'c' || i || '@example.org'),
         'lines', jsonb_build_array(jsonb_build_object('sku', 'TEA-' || i, 'description', 'Assam',
            'quantity', 1 + i % 3, 'unit_price_minor', 650)),
         'total_minor', 650 * (1 + i % 3), 'currency', 'EUR', 'shipping_country', 'DE')
FROM generate_series($((batch * 10)), $((batch * 10 + 9))) AS i;
COMMIT;
SQL
done
echo "40 orders committed with their outbox rows"
# The ERP goes away for 10 s while those are under way.
json_put "$sandbox/admin/faults/odoo" '{"reject_value": "Refused By The ERP", "error_rates": {"500": 0.05}, "outage_secs": 10}'
echo "the ERP is down for 10 s"
events='{"events": ['
for i in $(seq -w 40 44); do
  events+="{\"aggregate_type\": \"orders\", \"aggregate_id\": \"order-$run-$i\", \"event_type\": \"OrderPlaced\",
    \"payload\": {\"customer\": {\"customer_id\": \"w-$i\", \"name\": \"Web Customer $i\", \"email\": \"w$i@example.org\"},
      \"lines\": [{\"sku\": \"MUG-1\", \"description\": \"Mug\", \"quantity\": 2, \"unit_price_minor\": 900}],
      \"total_minor\": 1800, \"currency\": \"EUR\"}},"
done
for i in $(seq -w 0 19); do
  events+="{\"aggregate_type\": \"requests\", \"aggregate_id\": \"req-$run-$i\", \"event_type\": \"RequestCreated\",
    \"payload\": {\"requester_email\": \"r$i@example.org\", \"subject\": \"Request $i\",
      \"description\": \"Please call back.\", \"priority\": \"HIGH\", \"category\": \"delivery\"}},"
done
events="${events%,}]}"
accepted="$(curl -sf -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  "http://127.0.0.1:$api_port/v1/events/batch" -d "$events" | jq '.accepted | length')"
echo "ingest accepted $accepted events over HTTP (5 orders, 20 requests)"
echo "a field that does not fit is refused, naming it:"
curl -s -w '  (HTTP %{http_code})\n' -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  "http://127.0.0.1:$api_port/v1/events" -d "{\"aggregate_type\": \"requests\", \"aggregate_id\": \"req-$run-x\",
    \"event_type\": \"RequestCreated\", \"payload\": {\"requester_email\": \"a@example.org\", \"subject\": \"x\",
    \"description\": \"x\", \"priority\": \"SOON\"}}"
# Poison: two values that are not Avro, and an outbox row its contract refuses.
printf 'not avro at all\n{"json": "is not avro either"}\n' \
  | kcat -b "$SLUICE_KAFKA_BOOTSTRAP" -P -t orders.events.v1 -k "poison-$run"
bash "$HERE/postgres.sh" psql -q -c "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload)
  VALUES (gen_random_uuid(), 'orders', 'order-$run-bad', 'OrderPlaced', '{\"total_minor\": \"lots\"}')"
echo "poison sent: 2 non-Avro values on orders.events.v1, 1 outbox row that is not an OrderPlaced"
# erp-sink logs the stall once, naming topic, partition, offset and reason;
# sluice_partition_stalled holds the offset until the partition moves.
stall_logged() { grep -m 1 'partition stalled' "$DEMO/logs/erp-sink.log"; }
wait_for 30 "erp-sink naming a partition the outage stalls" stall_logged \
  || fail "the ERP outage stalled no partition of erp-sink for 3 s"
echo "a partition stalled by the outage, as erp-sink logs it:"
stall_logged | sed 's/^/  /'

echo
echo "== waiting for all 45 sagas to end"
sagas_ended() { psql_at "SELECT count(*) FROM saga.sagas WHERE business_key LIKE 'order-$run-%' AND state IN ('COMPLETED','COMPENSATED','FAILED')"; }
# "order status" per line, one for each row of this run on a sheet.
sheet_rows() {
  curl -sf "$sandbox/admin/spreadsheets/sluice-demo/$1" \
    | jq -r --arg p "$2" '(.values // [[]]) as $v | ($v[0] | index("Status")) as $c
        | $v[1:][] | select(.[0] | tostring | startswith($p)) | "\(.[0]) \(if $c then .[$c] else "" end)"'
}
final_order_rows() { sheet_rows Orders "order-$run-" | awk '$2 == "CONFIRMED" || $2 == "REJECTED"' | wc -l; }
is() { [[ "$("$1")" == "$2" ]]; }
# What is amiss when a wait gives up: each order of this run without one
# final row, its saga's state beside it.
unfinished_orders() {
  psql_at "SELECT business_key || ' ' || state FROM saga.sagas WHERE business_key LIKE 'order-$run-%' ORDER BY 1" \
    | awk 'FILENAME == ARGV[1] { rows[$1]++; row[$1] = $2; next }
        rows[$1] > 1 { printf "  %s: saga %s, %d sheet rows\n", $1, $2, rows[$1]; next }
        row[$1] != "CONFIRMED" && row[$1] != "REJECTED" {
          printf "  %s: saga %s, sheet row %s\n", $1, $2, (rows[$1] ? row[$1] : "none") }' \
      <(sheet_rows Orders "order-$run-") -
}
count_request_rows() { sheet_rows Requests "req-$run-" | wc -l; }

wait_for 300 "45 sagas ended" is sagas_ended 45 \
  || fail "$(sagas_ended) of 45 sagas ended; the others:"$'\n'"$(unfinished_orders)"
# The sagas' own rows come with their last step; a rejection's row comes
# after it, from OrderRejected through the transformer and sheets-sink.
wait_for 120 "45 order rows" is final_order_rows 45 \
  || fail "$(final_order_rows) of 45 order rows are final; the others:"$'\n'"$(unfinished_orders)"
wait_for 120 "20 request rows" is count_request_rows 20 || fail "$(count_request_rows) of 20 request rows"

# ---- the report: each figure from two places -----------------------------
count_keys() { # topic, key prefix, [event type]
  kcat -b "$SLUICE_KAFKA_BOOTSTRAP" -C -t "$1" -e -q -f '%k %h\n' 2>/dev/null \
    | awk -v p="$2" -v t="${3:-}" 'index($1, p) == 1 && (t == "" || index($0, "sluice.event_type=" t) > 0)' | wc -l
}
orders_sheet="$(sheet_rows Orders "order-$run-")"
erp_json="$(curl -sf "$sandbox/admin/erp/sale.order")"
rows_with() { awk -v s="$1" '$2 == s' <<< "$orders_sheet" | wc -l; }

placed_outbox="$(count_keys orders.events.v1 "order-$run-" OrderPlaced)"
requests_in="$(count_keys requests.events.v1 "req-$run-" RequestCreated)"
confirmed="$(psql_at "SELECT count(*) FROM saga.sagas WHERE business_key LIKE 'order-$run-%' AND state = 'COMPLETED'")"
rejected="$(psql_at "SELECT count(*) FROM saga.sagas WHERE business_key LIKE 'order-$run-%' AND state = 'COMPENSATED'")"
failed="$(psql_at "SELECT count(*) FROM saga.sagas WHERE business_key LIKE 'order-$run-%' AND state = 'FAILED'")"
confirmed_events="$(count_keys orders.events.v1 "order-$run-" OrderConfirmed)"
rejected_events="$(count_keys orders.events.v1 "order-$run-" OrderRejected)"
rows_confirmed="$(rows_with CONFIRMED)"
rows_rejected="$(rows_with REJECTED)"
erp_records="$(jq --arg p "order-$run-" '[.[] | select(.x_sluice_external_ref | startswith($p))] | length' <<< "$erp_json")"
erp_cancelled="$(jq --arg p "order-$run-" '[.[] | select((.x_sluice_external_ref | startswith($p)) and .state == "cancel")] | length' <<< "$erp_json")"
# Confirmed by action_confirm, for a res.partner, with their lines.
erp_confirmed="$(jq --arg p "order-$run-" '[.[] | select((.x_sluice_external_ref | startswith($p)) and .state == "sale" and .partner_id != false and (.order_line | length) > 0)] | length' <<< "$erp_json")"
request_rows="$(count_request_rows)"
letters="$(./target/debug/dlq-replayer list --since "$started_at" --output json 2>/dev/null)"
dlq_count() { jq -s --arg s "$1" --arg c "$2" '[.[] | select(.service == $s and .class == $c)] | length' <<< "$letters"; }
dlq_transformer="$(dlq_count transformer DECODE)"
dlq_saga="$(dlq_count saga-orchestrator DECODE)"
dlq_relay="$(dlq_count outbox-relay VALIDATION)"
dlq_erp="$(dlq_count erp-sink PERMANENT)"
requests_log="$(curl -sf "$sandbox/admin/requests")"
odoo_503="$(jq '[.[] | select(.api == "odoo" and .status == 503)] | length' <<< "$requests_log")"
sheets_429="$(jq '[.[] | select(.api == "sheets" and .status == 429)] | length' <<< "$requests_log")"

cat <<REPORT

== report (run $run)
events in     orders: $placed_outbox OrderPlaced on orders.events.v1 (40 via the outbox, 5 via HTTP)
              requests: $requests_in RequestCreated on requests.events.v1 (via HTTP)
sagas         confirmed $confirmed, rejected $rejected, failed $failed
              orders.events.v1: $confirmed_events OrderConfirmed, $rejected_events OrderRejected
Orders sheet  $rows_confirmed rows CONFIRMED, $rows_rejected rows REJECTED
ERP           $erp_records sale orders ($erp_confirmed confirmed with a customer and lines, $erp_cancelled cancelled)
Requests      $request_rows rows
dead letters  dlq.transformer.v1 DECODE $dlq_transformer, dlq.saga-orchestrator.v1 DECODE $dlq_saga,
              dlq.outbox-relay.v1 VALIDATION $dlq_relay, dlq.erp-sink.v1 PERMANENT $dlq_erp
faults met    Odoo answered 503 to $odoo_503 calls (outage), Sheets 429 to $sheets_429
REPORT

# Every figure against its expectation and its second source.
check() { [[ "$2" == "$3" ]] || fail "$1: $2, expected $3"; }
check "OrderPlaced events" "$placed_outbox" 45
check "RequestCreated events" "$requests_in" 20
check "sagas ended" "$((confirmed + rejected + failed))" 45
check "sagas rejected (the ERP's refused customer)" "$rejected" 4
check "sagas failed" "$failed" 0
check "OrderConfirmed events vs confirmed sagas" "$confirmed_events" "$confirmed"
check "OrderRejected events vs rejected sagas" "$rejected_events" "$rejected"
check "CONFIRMED rows vs confirmed sagas" "$rows_confirmed" "$confirmed"
check "REJECTED rows vs rejected sagas" "$rows_rejected" "$rejected"
check "ERP sale orders vs confirmed sagas" "$erp_records" "$confirmed"
check "cancelled sale orders" "$erp_cancelled" 0
check "confirmed sale orders with a customer and lines vs confirmed sagas" "$erp_confirmed" "$confirmed"
check "Requests rows vs RequestCreated events" "$request_rows" "$requests_in"
check "transformer DECODE dead letters" "$dlq_transformer" 2
check "saga DECODE dead letters" "$dlq_saga" 2
check "outbox-relay VALIDATION dead letters" "$dlq_relay" 1
check "erp-sink PERMANENT dead letters vs rejected sagas" "$dlq_erp" "$rejected"
(( odoo_503 > 0 )) || fail "the ERP outage was not met"
echo "every figure agrees with its second source"

echo
echo "== the Orders sheet in a browser (headless Chromium)"
page="$sandbox/sheets/sluice-demo/Orders"
browse() { chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "$@" "$page" 2>/dev/null; }
browse --window-size=1280,2200 --screenshot="$DEMO/orders-sheet.png" > /dev/null
shown="$(browse --dump-dom | grep -oE "<td>order-$run-[0-9]+</td>" | sort -u | wc -l)"
check "orders shown by the browser" "$shown" 45
[[ -s "$DEMO/orders-sheet.png" ]] || fail "no screenshot of $page"
echo "$shown orders of this run on $page; screenshot: $DEMO/orders-sheet.png"

echo
echo "== metrics the dashboards and alert rules use, in a live scrape"
scrape="$(awk '{print $2}' "$DEMO/metrics" | while read -r url; do curl -sf "$url/metrics"; done)"
used="$(grep -ohE '\bsluice_[a-z_]+' deploy/grafana/dashboards/*.json deploy/prometheus/alerts.yml | sort -u)"
missing=()
for name in $used; do
  grep -qE "^${name}(_count|_sum)?[{ ]" <<< "$scrape" || missing+=("$name")
done
(( ${#missing[@]} == 0 )) || fail "not exported by any service: ${missing[*]}"
echo "$(wc -w <<< "$used") metric names, each exported"
still_stalled="$(grep -cE '^sluice_partition_stalled\{.*\} [0-9]' <<< "$scrape" || true)"
check "partitions still stalled once the ERP is back (sluice_partition_stalled >= 0)" "$still_stalled" 0

if [[ "$mode" == check ]]; then
  echo
  echo "demo checked; its fleet stops now (logs in $DEMO/logs)"
  exit 0
fi

cat <<URLS

== the fleet keeps running (stop it and the stack with: make demo-down)
sandbox       $sandbox/sheets/sluice-demo/Orders   (a page; JSON below)
              $sandbox/sheets/sluice-demo/Requests
              $sandbox/admin/spreadsheets/sluice-demo/Orders
              $sandbox/admin/spreadsheets/sluice-demo/Requests
              $sandbox/admin/erp/sale.order
              $sandbox/admin/requests
ingest API    http://127.0.0.1:$api_port/v1/events (Bearer $token)
sagas         ./target/debug/saga-orchestrator list   (SLUICE_DATABASE_URL from .local/stack.env)
dead letters  ./target/debug/dlq-replayer list --since $started_at
/metrics
$(sed 's/^/              /; s/$/\/metrics/' "$DEMO/metrics")
URLS
