#!/usr/bin/env bash
# `make demo`: what runs end to end today.
#
# The fleet is not all built yet (see README, "Status"). Today the demo brings
# the local stack up, provisions every topic and schema, round-trips one
# OrderPlaced event through Kafka and the registry, sends a request event
# through ingest's HTTP API, commits an order with its outbox row in one
# Postgres transaction, and follows both through outbox-relay and the
# transformer to the sheet rows and the sale order they become (kcat), and
# through sheets-sink and erp-sink into the sandbox's Sheets and Odoo, read
# back over HTTP. `make demo-down` stops the stack.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$SLUICE_ROOT/deploy/local"
cd "$SLUICE_ROOT"

bash "$HERE/prerequisites.sh"
log "building"
# Only what the demo runs; `make test` builds the rest.
cargo build --locked -p sluice-provision --bin sluice-provision -p sluice-contracts --example order_round_trip \
  -p ingest -p outbox-relay -p transformer -p sandbox -p sheets-sink -p erp-sink -p dlq-replayer
bash "$HERE/stack.sh" up
set -a
# shellcheck source=/dev/null
source "$STACK_ENV"
set +a

echo
echo "== provisioning topics and schemas (schemas/topics.toml)"
./target/debug/sluice-provision apply --replication-factor 1

echo
echo "== one OrderPlaced event through Kafka and the registry"
./target/debug/examples/order_round_trip

echo
echo "== the same topic through kcat (key, partition, offset, value size)"
kcat -b "$SLUICE_KAFKA_BOOTSTRAP" -C -t orders.events.v1 -o -1 -e -q \
  -f 'key=%k partition=%p offset=%o value=%S bytes\n'

echo
echo "== one RequestCreated event through ingest's HTTP API"
token="demo-$RANDOM$RANDOM"
api_port="$(free_port)"; health_port="$(free_port)"
SLUICE_INGEST_TOKEN_SHA256="$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" \
  SLUICE_INGEST_LISTEN="127.0.0.1:$api_port" SLUICE_HTTP_LISTEN="127.0.0.1:$health_port" SLUICE_LOG=warn \
  ./target/debug/ingest &
ingest_pid=$!
trap 'kill -TERM "$ingest_pid" 2>/dev/null || true' EXIT
wait_for 30 "ingest" curl -sf "http://127.0.0.1:$health_port/readyz"
curl -s -w '  (HTTP %{http_code})\n' -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  "http://127.0.0.1:$api_port/v1/events" -d '{
    "aggregate_type": "requests", "aggregate_id": "req-demo-1", "event_type": "RequestCreated",
    "payload": {"requester_email": "ada@example.org", "subject": "Parcel damaged",
                "description": "The box arrived crushed.", "priority": "HIGH", "category": "delivery"}}'
echo "a field that does not fit is refused, naming it:"
curl -s -w '  (HTTP %{http_code})\n' -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  "http://127.0.0.1:$api_port/v1/events" -d '{
    "aggregate_type": "requests", "aggregate_id": "req-demo-2", "event_type": "RequestCreated",
    "payload": {"requester_email": "ada@example.org", "subject": "x", "description": "x", "priority": "SOON"}}'
kcat -b "$SLUICE_KAFKA_BOOTSTRAP" -C -t requests.events.v1 -o -1 -e -q -f 'key=%k partition=%p offset=%o headers=%h\n'
kill -TERM "$ingest_pid"; wait "$ingest_pid" || true
trap - EXIT

echo
echo "== an order and its outbox row, committed together; outbox-relay and the transformer carry it on"
PGOPTIONS='-c client_min_messages=warning' bash "$HERE/postgres.sh" psql -q \
  -f services/outbox-relay/migrations/0001_outbox.sql
relay_port="$(free_port)"
SLUICE_HTTP_LISTEN="127.0.0.1:$relay_port" SLUICE_LOG=warn ./target/debug/outbox-relay &
relay_pid=$!
SLUICE_HTTP_LISTEN="127.0.0.1:$(free_port)" SLUICE_LOG=warn ./target/debug/transformer \
  --rules services/transformer/rules.toml --transactional-id sluice-transformer-demo &
transformer_pid=$!
trap 'kill -TERM "$relay_pid" "$transformer_pid" 2>/dev/null || true' EXIT
# The first start creates the replication slot; rows committed before it
# exists are not in its stream.
wait_for 30 "outbox-relay streaming" bash -c \
  "curl -sf http://127.0.0.1:$relay_port/metrics | grep -q '^sluice_outbox_streaming{.*} 1'"
order="order-demo-$RANDOM"
bash "$HERE/postgres.sh" psql -q <<SQL
BEGIN;
-- the business change would go here, in the same transaction
INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload)
VALUES (gen_random_uuid(), 'orders', '$order', 'OrderPlaced',
        '{"customer": {"customer_id": "c-7", "name": "Ada Lovelace", "email": "ada@example.org"},
          "lines": [{"sku": "TEA-1", "description": "Assam", "quantity": 3, "unit_price_minor": 650}],
          "total_minor": 1950, "currency": "EUR", "shipping_country": "GB"}');
COMMIT;
SQL
echo "committed $order"
# Records printed back to back, Avro bytes that are not text shown as dots,
# one record per line.
printable() { LC_ALL=C tr -c '[:print:]' '.' | sed 's/key=/\nkey=/g' | grep -a .; }
wait_for 60 "the Orders row of $order" bash -c \
  "kcat -b '$SLUICE_KAFKA_BOOTSTRAP' -C -t sheets.rows.v1 -e -q -f '%k\n' | grep -q '/$order\$'"
echo "orders.events.v1 (from the outbox; headers carry event id, type and LSN):"
kcat -b "$SLUICE_KAFKA_BOOTSTRAP" -C -t orders.events.v1 -e -q -f 'key=%k headers=%h\n' | grep "key=$order "
echo "sheets.rows.v1 (rules orders-sheet-placed and requests-sheet-created; Avro, printable bytes shown):"
kcat -b "$SLUICE_KAFKA_BOOTSTRAP" -C -t sheets.rows.v1 -e -q -f 'key=%k  %s' \
  | printable | grep -aE "key=sluice-demo/(Orders/$order|Requests/req-demo-1) " | tail -n 2
echo "erp.commands.v1 (rule orders-erp-sale-order):"
wait_for 30 "the sale order of $order" bash -c \
  "kcat -b '$SLUICE_KAFKA_BOOTSTRAP' -C -t erp.commands.v1 -e -q -f '%k\n' | grep -qx '$order'"
kcat -b "$SLUICE_KAFKA_BOOTSTRAP" -C -t erp.commands.v1 -e -q -f 'key=%k headers=%h  %s' \
  | printable | grep -a "key=$order "

echo
echo "== sheets-sink and erp-sink apply them to the sandbox's Google Sheets and Odoo"
sandbox_port="$(free_port)"
sandbox_url="http://127.0.0.1:$sandbox_port"
mkdir -p "$SLUICE_LOCAL/demo"
key_file="$SLUICE_LOCAL/demo/service-account.json"
./target/debug/sandbox keygen --out "$key_file" --token-uri "$sandbox_url/token" >/dev/null
SLUICE_LOG=warn ./target/debug/sandbox serve --listen "127.0.0.1:$sandbox_port" \
  --service-account "$key_file" --spreadsheet sluice-demo=Orders,Requests &
sandbox_pid=$!
trap 'kill -TERM "$relay_pid" "$transformer_pid" "$sandbox_pid" 2>/dev/null || true' EXIT
wait_for 30 "the sandbox" curl -sf "$sandbox_url/admin/requests"
SLUICE_HTTP_LISTEN="127.0.0.1:$(free_port)" SLUICE_LOG=warn ./target/debug/sheets-sink \
  --service-account "$key_file" --sheets-base-url "$sandbox_url" &
sheets_pid=$!
SLUICE_HTTP_LISTEN="127.0.0.1:$(free_port)" SLUICE_LOG=warn ./target/debug/erp-sink \
  --odoo-url "$sandbox_url" --odoo-database sluice --odoo-login sluice --odoo-password sandbox &
erp_pid=$!
trap 'kill -TERM "$relay_pid" "$transformer_pid" "$sandbox_pid" "$sheets_pid" "$erp_pid" 2>/dev/null || true' EXIT
# sheets-sink paces itself to Google's 60 requests a minute: a few seconds.
wait_for 90 "the Orders row of $order in the sheet" bash -c \
  "curl -sf '$sandbox_url/admin/spreadsheets/sluice-demo/Orders' | grep -q '\"$order\"'"
echo "the Orders sheet, read back from the sandbox ($sandbox_url/admin/spreadsheets/sluice-demo/Orders):"
curl -s "$sandbox_url/admin/spreadsheets/sluice-demo/Orders"; echo
wait_for 60 "the sale order of $order in the ERP" bash -c \
  "curl -sf '$sandbox_url/admin/erp/sale.order' | grep -q '\"$order\"'"
echo "the ERP's sale orders, read back from the sandbox ($sandbox_url/admin/erp/sale.order):"
curl -s "$sandbox_url/admin/erp/sale.order"; echo
echo "erp.results.v1 (erp-sink's answer, keyed by the order):"
kcat -b "$SLUICE_KAFKA_BOOTSTRAP" -C -t erp.results.v1 -e -q -f 'key=%k  %s' \
  | printable | grep -a "key=$order "
echo "dead letters so far (dlq-replayer stats):"
./target/debug/dlq-replayer stats
kill -TERM "$relay_pid" "$transformer_pid" "$sheets_pid" "$erp_pid" "$sandbox_pid"
wait "$relay_pid" "$transformer_pid" "$sheets_pid" "$erp_pid" "$sandbox_pid" || true
trap - EXIT

echo
echo "== the local stack"
bash "$HERE/stack.sh" status
cat <<MSG

Not in this demo yet: the saga orchestrator (issue 8), poison messages and an
ERP outage (issue 9). Stop the stack with: make demo-down
MSG
