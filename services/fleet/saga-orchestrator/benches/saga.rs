//! `make bench`: order fulfilment sagas at a fixed order rate, against the
//! same work driven without a saga, in this run on this machine (release
//! binaries of outbox-relay, erp-sink, sheets-sink and saga-orchestrator,
//! the sandbox in this process):
//!
//! - saga: OrderPlaced events at `RATE`/s, after a few untimed sagas have
//!   warmed the fleet up; each saga's completion time runs
//!   from the event's occurred_at to the commit that confirmed it (ERP
//!   reservation and sheet row applied, replies correlated, OrderConfirmed
//!   in the outbox);
//! - reference: the same two commands per order sent straight to the sinks
//!   at the same rate, the second after the first one's result, timed from
//!   the first send to the second result — the sinks' own round trips, with
//!   no orchestrator, Postgres or outbox in between.
//!
//! The seed target is a completion under 5 s. Each process's cost is read
//! from /proc: resident memory idle once the sagas are done, its peak, and
//! CPU time per 100 000 sagas (from its start, warm-up included). Needs the
//! local stack; writes
//! `bench-results/saga-orchestrator.md`.
// A benchmark program: any failure ends it with the panic's message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Fleet, SHEET, SPREADSHEET, order_ids, orders_by};
use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{
    ErpCommand, ErpField, ErpOperation, ErpResult, SagaStep, ScalarValue, SheetCell,
    SheetRowResult, SheetRowUpsert,
};
use sluice_fleet::cost::Usage;
use sluice_testkit::{Stack, producer, scaled, unique_name};
use sqlx::Row;
use tokio::sync::oneshot;

const RATE: f64 = 20.0;
/// Orders of each run (400 at full scale).
fn order_count() -> usize {
    scaled(400, 40)
}
const TARGET: Duration = Duration::from_secs(5);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sagas run through the whole fleet before the timed ones, so that every
/// consumer has joined its group and every schema is cached: the sagas are
/// timed on a warm fleet, as the reference is.
const WARM_UP: usize = 5;

/// Runs the warm-up sagas to their end.
async fn warm_up(fleet: &Fleet) {
    let orders = orders_by("warm-up", WARM_UP, "Katherine Johnson");
    fleet.place(&orders).await;
    fleet
        .until_finished(WARM_UP as i64, Duration::from_secs(120))
        .await;
}

/// Places `order_count()` orders at `RATE`/s after the warm-up; returns
/// completion times (s) and sagas completed per second.
async fn sagas(fleet: &Fleet) -> (Vec<f64>, f64) {
    warm_up(fleet).await;
    let ids = order_ids("bench", order_count());
    let started = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let due = Duration::from_secs_f64(i as f64 / RATE);
        tokio::time::sleep_until((started + due).into()).await;
        fleet
            .place(&[(id.clone(), "Katherine Johnson".to_owned())])
            .await;
    }
    let all = (WARM_UP + order_count()) as i64;
    let states = fleet.until_finished(all, Duration::from_secs(600)).await;
    assert_eq!(states.get("COMPLETED"), Some(&all), "{states:?}");
    let rows = sqlx::query(
        "SELECT extract(epoch FROM finished_at)::float8 * 1000 - (data->>'placed_at')::float8 AS ms,
                (data->>'placed_at')::float8 AS placed,
                extract(epoch FROM finished_at)::float8 * 1000 AS finished
         FROM saga.sagas WHERE business_key LIKE 'bench-%'",
    )
    .fetch_all(&fleet.pool)
    .await
    .unwrap();
    let mut times: Vec<f64> = rows
        .iter()
        .map(|r| r.get::<f64, _>("ms") / 1000.0)
        .collect();
    times.sort_by(f64::total_cmp);
    let first = rows
        .iter()
        .map(|r| r.get::<f64, _>("placed"))
        .fold(f64::MAX, f64::min);
    let last = rows
        .iter()
        .map(|r| r.get::<f64, _>("finished"))
        .fold(0.0, f64::max);
    (times, order_count() as f64 / ((last - first) / 1000.0))
}

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

/// Reads both result topics, waking whoever waits for each command id.
fn answer_results(fleet: &Fleet, waiting: Waiting) {
    let consumer: StreamConsumer = Stack::get()
        .kafka_config()
        .set("group.id", unique_name("bench-results"))
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    consumer
        .subscribe(&[&fleet.topics.erp_results, &fleet.topics.sheet_results])
        .unwrap();
    let erp_topic = fleet.topics.erp_results.clone();
    let codec = AvroCodec::new(Stack::get().registry_settings());
    tokio::spawn(async move {
        let mut stream = consumer.stream();
        while let Some(Ok(message)) = stream.next().await {
            let Some(bytes) = message.payload() else {
                continue;
            };
            let id = if message.topic() == erp_topic {
                codec.decode::<ErpResult>(bytes).await.map(|r| r.command_id)
            } else {
                codec
                    .decode::<SheetRowResult>(bytes)
                    .await
                    .map(|r| r.command_id)
            };
            if let Some(waiter) = id.ok().and_then(|id| waiting.lock().unwrap().remove(&id)) {
                let _ = waiter.send(());
            }
        }
    });
}

/// The same two commands per order straight to the sinks, sequentially;
/// returns round-trip times (s).
async fn direct(fleet: &Fleet) -> Vec<f64> {
    let waiting: Waiting = Arc::default();
    answer_results(fleet, Arc::clone(&waiting));
    // Let the results consumer join before the first result can arrive.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let codec = Arc::new(AvroCodec::new(Stack::get().registry_settings()));
    let started = Instant::now();
    let mut runs = Vec::with_capacity(order_count());
    for (i, order) in order_ids("direct", order_count()).into_iter().enumerate() {
        let due = Duration::from_secs_f64(i as f64 / RATE);
        tokio::time::sleep_until((started + due).into()).await;
        let (waiting, codec) = (Arc::clone(&waiting), Arc::clone(&codec));
        let (erp, sheets) = (
            fleet.topics.erp_commands.clone(),
            fleet.topics.sheet_rows.clone(),
        );
        runs.push(tokio::spawn(async move {
            let begun = Instant::now();
            let step = SagaStep {
                saga_id: uuid::Uuid::new_v4().to_string(),
                step: "direct".into(),
                attempt: 1,
            };
            let erp_command = ErpCommand {
                command_id: uuid::Uuid::new_v4().to_string(),
                model: "sale.order".into(),
                operation: ErpOperation::Create,
                external_ref: order.clone(),
                // What the saga's reservation sends (fulfilment.rs).
                fields: [
                    ("client_order_ref", ScalarValue::String(order.clone())),
                    (
                        "partner_id.email",
                        ScalarValue::String("katherine@example.org".into()),
                    ),
                    (
                        "partner_id.name",
                        ScalarValue::String("Katherine Johnson".into()),
                    ),
                    (
                        "order_line.0.product_id.default_code",
                        ScalarValue::String("SKU-1".into()),
                    ),
                    ("order_line.0.product_uom_qty", ScalarValue::Long(2)),
                    ("order_line.0.price_unit", ScalarValue::Double(12.5)),
                ]
                .into_iter()
                .map(|(name, value)| ErpField {
                    name: name.into(),
                    value,
                })
                .collect(),
                source_event_id: None,
                issued_at: sluice_contracts::now_millis(),
                saga: Some(step.clone()),
                correlation_id: None,
                causation_id: None,
            };
            let value = codec.encode(&erp, &erp_command).await.unwrap();
            send_and_wait(&waiting, &erp, &order, &value, &erp_command.command_id).await;
            let row = SheetRowUpsert {
                command_id: uuid::Uuid::new_v4().to_string(),
                spreadsheet_id: SPREADSHEET.into(),
                sheet: SHEET.into(),
                row_key: order.clone(),
                cells: vec![SheetCell {
                    column: "Order".into(),
                    value: ScalarValue::String(order.clone()),
                }],
                source_event_id: uuid::Uuid::new_v4().to_string(),
                occurred_at: sluice_contracts::now_millis(),
                saga: Some(step),
                correlation_id: None,
                causation_id: None,
            };
            let value = codec.encode(&sheets, &row).await.unwrap();
            let key = format!("{SPREADSHEET}/{SHEET}/{order}");
            send_and_wait(&waiting, &sheets, &key, &value, &row.command_id).await;
            begun.elapsed().as_secs_f64()
        }));
    }
    let mut times = Vec::with_capacity(order_count());
    for run in runs {
        times.push(run.await.unwrap());
    }
    times.sort_by(f64::total_cmp);
    times
}

async fn send_and_wait(waiting: &Waiting, topic: &str, key: &str, value: &[u8], id: &str) {
    let (tx, rx) = oneshot::channel();
    waiting.lock().unwrap().insert(id.to_owned(), tx);
    producer()
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(120), rx)
        .await
        .expect("a result within 120 s")
        .unwrap();
}

#[tokio::main]
async fn main() {
    let fleet = Fleet::new("bench").await;
    let (orchestrator, _) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    let erp = fleet.erp_sink(200).await;
    let sheets = fleet.sheets_sink().await;
    let processes = [
        ("saga-orchestrator", orchestrator.0.id()),
        ("outbox-relay (saga outbox)", relay.0.id()),
        ("erp-sink", erp.0.id()),
        ("sheets-sink", sheets.0.id()),
    ];
    let usage = || processes.map(|(_, pid)| Usage::of(pid).expect("a running process's /proc"));
    let started = usage();

    let (saga_times, per_second) = sagas(&fleet).await;
    let busy = usage();
    // Idle: every saga done, nothing left in flight.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = usage();
    drop(orchestrator);
    let direct_times = direct(&fleet).await;

    let (p50, p99) = (percentile(&saga_times, 50.0), percentile(&saga_times, 99.0));
    let (d50, d99) = (
        percentile(&direct_times, 50.0),
        percentile(&direct_times, 99.0),
    );
    let target = TARGET.as_secs_f64();
    let order_count = order_count();
    let mut report = String::new();
    writeln!(report, "# saga-orchestrator benchmark\n").unwrap();
    writeln!(
        report,
        "{order_count} orders at {RATE}/s, after {WARM_UP} untimed sagas through the fleet; release binaries of saga-orchestrator, outbox-relay, erp-sink (200 requests/s) and sheets-sink (batches, sandbox without quota); the sandbox in the benchmark process; 2 cores.\n"
    )
    .unwrap();
    writeln!(
        report,
        "| run | p50 s | p99 s | p50 × reference | p99 × reference | p99 × 5 s target |"
    )
    .unwrap();
    writeln!(report, "|---|---:|---:|---:|---:|---:|").unwrap();
    writeln!(
        report,
        "| reference: ERP command then sheet row, straight to the sinks | {d50:.3} | {d99:.3} | 1.00 | 1.00 | {:.2} |",
        d99 / target
    )
    .unwrap();
    writeln!(
        report,
        "| saga: OrderPlaced → reserve → record → OrderConfirmed committed | {p50:.3} | {p99:.3} | {:.2} | {:.2} | {:.2} |",
        p50 / d50,
        p99 / d99,
        p99 / target
    )
    .unwrap();
    writeln!(
        report,
        "\nSagas completed: {per_second:.1}/s at {RATE} orders/s offered ({:.2} × the offered rate).",
        per_second / RATE
    )
    .unwrap();
    let sagas_run = (order_count + WARM_UP) as f64;
    writeln!(
        report,
        "\n| process | RSS idle after the run (MiB) | peak RSS (MiB) | CPU s per 100 000 sagas |\n|---|---:|---:|---:|"
    )
    .unwrap();
    for ((((name, _), started), busy), idle) in processes.iter().zip(&started).zip(&busy).zip(&idle)
    {
        writeln!(
            report,
            "| {name} | {:.1} | {:.1} | {:.0} |",
            idle.rss_kib as f64 / 1024.0,
            idle.peak_kib as f64 / 1024.0,
            (busy.cpu_secs - started.cpu_secs) / sagas_run * 100_000.0
        )
        .unwrap();
    }
    let dir = sluice_testkit::bench_results_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("saga-orchestrator.md");
    std::fs::write(&file, &report).unwrap();
    println!("{report}\nwritten to {}", file.display());
    fleet.finish(relay).await;
}
