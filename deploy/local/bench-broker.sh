#!/usr/bin/env bash
# `make bench`: the broker's own ceiling on this machine, the reference the
# Sluice figures are read against — Kafka's ProducerPerformance (acks=all,
# idempotent, lz4, linger 5 ms, as Sluice's producers) and
# ConsumerPerformance, from the stack's Kafka artifacts, on a fresh topic.
# Writes bench-results/broker.md (or under SLUICE_BENCH_RESULTS);
# SLUICE_BENCH_SCALE shrinks the run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$SLUICE_ROOT/deploy/local"

scale="${SLUICE_BENCH_SCALE:-1}"
records="$(awk -v s="$scale" 'BEGIN { printf "%d", 1000000 * s }')"
size=300
topic="bench-broker-$$-$RANDOM"
bash "$HERE/kafka.sh" topics --create --topic "$topic" --partitions 3 --replication-factor 1 > /dev/null

log "ProducerPerformance: $records records of $size bytes"
produced="$(bash "$HERE/kafka.sh" perf-test --topic "$topic" --num-records "$records" \
  --record-size "$size" --throughput -1 | grep 'records sent' | tail -n1)"
[[ -n "$produced" ]] || die "no summary from ProducerPerformance"
# "1000000 records sent, 181159.4 records/sec (51.83 MB/sec), 180.2 ms avg latency, ..."
produce_rate="$(sed -E 's/.* ([0-9.]+) records\/sec.*/\1/' <<< "$produced")"
produce_mb="$(sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/' <<< "$produced")"

log "ConsumerPerformance: the same $records records"
consumed="$(bash "$HERE/kafka.sh" consumer-perf-test --topic "$topic" --messages "$records" \
  --group "bench-broker-$$" --timeout 60000 --hide-header | tail -n1)"
# start, end, MB, MB/s, records, records/s, rebalance ms, fetch ms, fetch MB/s, fetch records/s
consume_rate="$(cut -d, -f10 <<< "$consumed" | tr -d ' ')"
consume_mb="$(cut -d, -f9 <<< "$consumed" | tr -d ' ')"
[[ -n "$consume_rate" ]] || die "no summary from ConsumerPerformance: $consumed"
bash "$HERE/kafka.sh" topics --delete --topic "$topic" > /dev/null

results="${SLUICE_BENCH_RESULTS:-$SLUICE_ROOT/bench-results}"
mkdir -p "$results"
cat > "$results/broker.md" <<REPORT
# Broker ceiling

Measured $(date -u '+%Y-%m-%d %H:%M UTC') on this machine ($(nproc) cores), local stack: Kafka
$KAFKA_VERSION's own ProducerPerformance and ConsumerPerformance, $records records of $size
bytes on a fresh 3-partition topic; producer acks=all, idempotent, lz4, linger 5 ms (as
Sluice's producers); consumer rate over its fetch time (without the group join). No
Sluice process runs: this is what the broker and this machine allow.

| tool | records/s | MB/s |
|---|---|---|
| ProducerPerformance | $produce_rate | $produce_mb |
| ConsumerPerformance | $consume_rate | $consume_mb |
REPORT
cat "$results/broker.md"
