//! `make bench`: outbox-relay against Kafka's own producer benchmark
//! (ProducerPerformance, from the stack's Kafka artifacts), both measured in
//! this run on this machine, reported as ratios.
//!
//! - throughput: a backlog of committed rows (transactions of 100) drained
//!   by a fresh relay, rows/s from its first acknowledged event to its last;
//!   reference: ProducerPerformance at full speed with records of the same
//!   size (acks=all, idempotent, lz4, linger 5 ms, like the relay's producer);
//! - latency: single-row transactions at a fixed rate, commit-to-ack p50/p99
//!   from the relay's own histogram; reference: ProducerPerformance's
//!   send-to-ack p50/p99 at the same rate;
//! - cost: CPU time of the relay and of the Postgres walsender decoding its
//!   slot during the drain, per 100 000 events (docs/SCALING.md builds on
//!   it).
//!
//! Needs the local stack (`make stack-up`); writes
//! `bench-results/outbox-relay.md`.
// A benchmark program: any failure ends it with the panic's message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_avro::{AvroCodec, EventInput, event_record};
use sluice_contracts::Catalog;
use sluice_fleet::cost::Usage;
use sluice_testkit::{Stack, TestTopic, eventually};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::common::{
    RATE, ROWS_PER_TRANSACTION, RelayProcess, WAIT, backlog, drop_slot, insert, latency_run,
    outbox_table, slot_and_publication,
};

struct Relayed {
    rows_per_sec: f64,
    /// CPU seconds per 100 000 events of the backlog: the relay's process
    /// (start-up included), and the Postgres walsender decoding its slot.
    cpu: [(&'static str, f64); 2],
}

struct Latency {
    p50_ms: f64,
    p99_ms: f64,
}

struct Reference {
    records_per_sec: f64,
    latency: Latency,
}

/// Bytes of one relayed event's value, for reference records of that size.
async fn event_size(topic: &str) -> usize {
    let catalog = Catalog::embedded().unwrap();
    let payload = json!({"reason": "customer asked", "cancelled_by": "support"});
    let (contract, value) = event_record(
        &catalog,
        &EventInput {
            aggregate_type: "orders",
            aggregate_id: "order-123",
            event_type: "OrderCancelled",
            event_id: "0b9f6a52-64a4-4c52-9a6e-3f1d2b7c8e90",
            occurred_at_ms: 1_795_435_200_000,
            correlation_id: None,
            causation_id: None,
            payload: &payload,
        },
    )
    .unwrap();
    AvroCodec::new(Stack::get().registry_settings())
        .encode_value(topic, contract, value)
        .await
        .unwrap()
        .len()
}

/// Single-row transactions at `RATE` while a relay streams.
async fn relay_latency(pool: &PgPool) -> Latency {
    let table = outbox_table(pool, "bench_latency").await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "bench-latency", 3).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "bench-latency-dlq", 1).await;
    let relay = RelayProcess::start(&table, &topic.name, &dlq.name);
    relay.wait_streaming().await;
    let per_tick = RATE / 100;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let started = Instant::now();
    // Counted, not assumed: a slower machine or build inserts fewer.
    let mut inserted = 0;
    while started.elapsed() < latency_run() {
        ticker.tick().await;
        futures::future::join_all((0..per_tick).map(|_| insert(pool, &table, 1))).await;
        inserted += per_tick;
    }
    let total = inserted as f64;
    eventually("every row relayed", WAIT, || async {
        let relayed = relay.metric("sluice_outbox_relayed_total{").await?;
        (relayed >= total).then_some(())
    })
    .await;
    let quantile = |q: &'static str| {
        let relay = &relay;
        async move {
            relay
                .metric(&format!(
                    "sluice_outbox_commit_to_ack_seconds{{quantile=\"{q}\"}}"
                ))
                .await
                .unwrap()
                * 1000.0
        }
    };
    let latency = Latency {
        p50_ms: quantile("0.5").await,
        p99_ms: quantile("0.99").await,
    };
    relay.stop();
    drop_slot(pool, &table).await;
    latency
}

/// A committed backlog drained by a fresh relay; also returns the topic, for
/// the reference's record size.
async fn relay_throughput(pool: &PgPool) -> (Relayed, usize) {
    let table = outbox_table(pool, "bench_backlog").await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "bench-backlog", 3).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "bench-backlog-dlq", 1).await;
    // Slot and publication first, so the backlog is kept for the relay.
    slot_and_publication(pool, &table).await;
    for _ in 0..backlog() / ROWS_PER_TRANSACTION {
        insert(pool, &table, ROWS_PER_TRANSACTION).await;
    }
    let relay = RelayProcess::start(&table, &topic.name, &dlq.name);
    let series = "sluice_outbox_relayed_total{";
    let (first_at, first) = loop {
        if let Some(count) = relay.metric(series).await {
            break (Instant::now(), count);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let walsender = walsender(pool, &table).await;
    eventually("the backlog relayed", WAIT, || async {
        let count = relay.metric(series).await?;
        (count >= backlog() as f64).then_some(())
    })
    .await;
    let rows_per_sec = (backlog() as f64 - first) / first_at.elapsed().as_secs_f64();
    // Each process's whole CPU time (both started for this backlog: the
    // walsender when the relay connected), read before the relay stops.
    let per_100k = |pid: u32| {
        let used = Usage::of(pid).expect("a running process's /proc").cpu_secs;
        used / backlog() as f64 * 100_000.0
    };
    let (relay_cpu, walsender_cpu) = (per_100k(relay.pid()), per_100k(walsender));
    relay.stop();
    drop_slot(pool, &table).await;
    let cpu = [
        ("outbox-relay", relay_cpu),
        (
            "Postgres walsender (logical decoding, pgoutput)",
            walsender_cpu,
        ),
    ];
    (Relayed { rows_per_sec, cpu }, event_size(&topic.name).await)
}

/// The walsender process streaming `table`'s slot to the relay.
async fn walsender(pool: &PgPool, table: &str) -> u32 {
    let slot = format!("{table}_slot");
    eventually("the slot's walsender", WAIT, || async {
        let pid: Option<i32> =
            sqlx::query_scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1")
                .bind(&slot)
                .fetch_one(pool)
                .await
                .ok()?;
        pid.and_then(|pid| u32::try_from(pid).ok())
    })
    .await
}

/// ProducerPerformance's summary line, e.g. "… 79176.6 records/sec (11.33
/// MB/sec), … 252 ms 50th, 302 ms 95th, 309 ms 99th, 312 ms 99.9th."
fn perf_test(topic: &str, records: usize, size: usize, throughput: i64) -> (f64, Latency) {
    let stack = Stack::get();
    let output = Command::new("bash")
        .arg(stack.path("deploy/local/kafka.sh"))
        .arg("perf-test")
        .args(["--topic", topic])
        .args(["--num-records", &records.to_string()])
        .args(["--record-size", &size.to_string()])
        .args(["--throughput", &throughput.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find(|line| line.contains("records sent"))
        .unwrap_or_else(|| panic!("no summary from ProducerPerformance:\n{stdout}"));
    let before = |unit: &str| -> f64 {
        let end = summary.find(unit).unwrap();
        summary[..end]
            .split_whitespace()
            .next_back()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        before(" records/sec"),
        Latency {
            p50_ms: before(" ms 50th"),
            p99_ms: before(" ms 99th"),
        },
    )
}

async fn reference(size: usize) -> Reference {
    let full = TestTopic::create("bench-reference", 3).await;
    let (records_per_sec, _) = perf_test(&full.name, backlog(), size, -1);
    let paced = TestTopic::create("bench-reference-paced", 3).await;
    let records = RATE * usize::try_from(latency_run().as_secs()).unwrap();
    let (_, latency) = perf_test(&paced.name, records, size, i64::try_from(RATE).unwrap());
    Reference {
        records_per_sec,
        latency,
    }
}

fn report(relayed: &Relayed, latency: &Latency, reference: &Reference, size: usize) -> String {
    let mut out = String::new();
    writeln!(out, "# outbox-relay benchmark\n").unwrap();
    writeln!(
        out,
        "Measured {} on this machine ({} cores), local stack, release build. \
         Reference: Kafka's ProducerPerformance ({size}-byte records, acks=all, idempotent, \
         lz4, linger 5 ms) against the same broker in the same run.\n",
        chrono::DateTime::from_timestamp_millis(sluice_contracts::now_millis())
            .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default(),
        std::thread::available_parallelism().map_or(0, usize::from),
    )
    .unwrap();
    writeln!(out, "| measure | relay | reference | relay / reference |").unwrap();
    writeln!(out, "|---|---|---|---|").unwrap();
    writeln!(
        out,
        "| throughput, {} rows in transactions of {ROWS_PER_TRANSACTION} (events/s) | {:.0} | {:.0} | {:.2} |",
        backlog(),
        relayed.rows_per_sec,
        reference.records_per_sec,
        relayed.rows_per_sec / reference.records_per_sec
    )
    .unwrap();
    for (name, relay, reference) in [
        ("p50", latency.p50_ms, reference.latency.p50_ms),
        ("p99", latency.p99_ms, reference.latency.p99_ms),
    ] {
        writeln!(
            out,
            "| latency {name} at {RATE}/s, relay commit→ack vs producer send→ack (ms) | {relay:.1} | {reference:.1} | {:.2} |",
            relay / reference.max(0.1)
        )
        .unwrap();
    }
    writeln!(
        out,
        "\nCPU for that backlog, each process's whole time from /proc (the relay's start-up included; the walsender starts when the relay connects):\n\n| process | CPU s per 100 000 events | events/s per busy core |\n|---|---:|---:|"
    )
    .unwrap();
    for (name, secs) in relayed.cpu {
        writeln!(
            out,
            "| {name} | {secs:.2} | {:.0} |",
            100_000.0 / secs.max(0.01)
        )
        .unwrap();
    }
    out
}

#[tokio::main]
async fn main() {
    let stack = Stack::get();
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(RATE / 100).unwrap())
        .connect(&stack.database_url)
        .await
        .unwrap();
    eprintln!(
        "[bench] relay latency at {RATE} rows/s for {:?}",
        latency_run()
    );
    let latency = relay_latency(&pool).await;
    eprintln!("[bench] relay throughput, {} rows", backlog());
    let (relayed, size) = relay_throughput(&pool).await;
    let [(relay, relay_cpu), _] = relayed.cpu;
    eprintln!(
        "[bench] relay {:.0} events/s; {relay} {relay_cpu:.2} CPU s per 100 000",
        relayed.rows_per_sec
    );
    eprintln!("[bench] reference: ProducerPerformance, {size}-byte records");
    let reference = reference(size).await;
    let text = report(&relayed, &latency, &reference, size);
    let dir = sluice_testkit::bench_results_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("outbox-relay.md");
    std::fs::write(&file, &text).unwrap();
    println!("{text}\nwritten to {}", file.display());
}
