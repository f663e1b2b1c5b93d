//! `make bench`: the order fulfilment saga's capacity curve, against the
//! same work driven without a saga, in this run on this machine (release
//! binaries of outbox-relay, erp-sink, sheets-sink and saga-orchestrator,
//! the sandbox in this process):
//!
//! - saga: OrderPlaced events offered at 20, 50, 100, 200 and 400 orders/s
//!   in turn, after a few untimed sagas have warmed the fleet up, stopping
//!   after the first rate it falls behind at; each saga's completion time
//!   runs from the event's occurred_at to the commit that confirmed it (ERP
//!   reservation and sheet row applied, replies correlated, OrderConfirmed
//!   in the outbox);
//! - reference: the same two commands per order sent straight to the sinks
//!   at the first rate, the second after the first one's result, timed from
//!   the first send to the second result — the sinks' own round trips, with
//!   no orchestrator, Postgres or outbox in between.
//!
//! The target is a completion p99 under 5 s. Each process's cost is read
//! from /proc: resident memory idle once the sagas are done, its peak, and
//! CPU time per 100 000 sagas (from its start, warm-up included). Needs the
//! local stack; writes `bench-results/saga-orchestrator.md` and the curve
//! as `bench-results/saga-curve.csv` (plotted by bench-report.sh).
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
    ErpResult, SagaStep, ScalarValue, SheetCell, SheetRowResult, SheetRowUpsert,
};
use sluice_fleet::cost::{Usage, tree_cpu_secs};
use sluice_testkit::{Stack, percentile, producer, scaled, scaled_duration, unique_name};
use sqlx::Row;
use tokio::sync::oneshot;

/// The offered rates of the capacity curve (orders/s), climbed in order
/// until the fleet falls behind.
const RATES: [f64; 5] = [20.0, 50.0, 100.0, 200.0, 400.0];
/// The reference's rate: the curve's first.
const REFERENCE_RATE: f64 = RATES[0];
/// How long each rate is offered (20 s at full scale).
fn offered_for() -> Duration {
    scaled_duration(Duration::from_secs(20), Duration::from_millis(500))
}
/// Orders of the reference run (400 at full scale).
fn reference_orders() -> usize {
    scaled(400, 40)
}
const TARGET: Duration = Duration::from_secs(5);
/// Below this share of the offered rate, the fleet has fallen behind.
const KEEPING_UP: f64 = 0.9;

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

/// One step of the curve: orders offered at `rate`/s.
struct Step {
    rate: f64,
    orders: usize,
    /// Completion times (s), sorted.
    times: Vec<f64>,
    /// Sagas completed per second, from the first confirmed to the last.
    per_second: f64,
}

impl Step {
    fn p(&self, percent: f64) -> f64 {
        percentile(&self.times, percent)
    }

    /// Whether the fleet kept up: p99 within the target and the offered
    /// rate sustained.
    fn kept_up(&self) -> bool {
        self.p(99.0) <= TARGET.as_secs_f64() && self.per_second >= KEEPING_UP * self.rate
    }
}

/// Offers orders at `rate`/s for [`offered_for`], `finished` sagas done
/// before; waits for all of them to finish.
async fn step(fleet: &Fleet, rate: f64, finished: usize) -> Step {
    let count = (rate * offered_for().as_secs_f64()).round() as usize;
    let prefix = format!("bench-r{rate}");
    let ids = order_ids(&prefix, count);
    let started = Instant::now();
    let mut placed = 0;
    // Each pass places every order due by now at once, so the pace holds
    // however long a send takes.
    while placed < count {
        let due = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(count);
        let batch: Vec<_> = ids[placed..due]
            .iter()
            .map(|id| (id.clone(), "Katherine Johnson".to_owned()))
            .collect();
        fleet.place(&batch).await;
        placed = due;
        let next = Duration::from_secs_f64(placed as f64 / rate);
        tokio::time::sleep_until((started + next).into()).await;
    }
    let all = (finished + count) as i64;
    let states = fleet.until_finished(all, Duration::from_secs(900)).await;
    assert_eq!(states.get("COMPLETED"), Some(&all), "{states:?}");
    let rows = sqlx::query(
        "SELECT extract(epoch FROM finished_at)::float8 * 1000 - (data->>'occurred_at')::float8 AS ms,
                extract(epoch FROM finished_at)::float8 * 1000 AS finished
         FROM saga.sagas WHERE business_key LIKE $1",
    )
    .bind(format!("{prefix}-%"))
    .fetch_all(&fleet.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), count);
    let mut times: Vec<f64> = rows
        .iter()
        .map(|r| r.get::<f64, _>("ms") / 1000.0)
        .collect();
    times.sort_by(f64::total_cmp);
    // From the first saga finished to the last: a fleet that keeps up
    // finishes them as fast as they come, whatever its latency; one that
    // falls behind finishes the last ones later and later.
    let first = rows
        .iter()
        .map(|r| r.get::<f64, _>("finished"))
        .fold(f64::MAX, f64::min);
    let last = rows
        .iter()
        .map(|r| r.get::<f64, _>("finished"))
        .fold(0.0, f64::max);
    Step {
        rate,
        orders: count,
        times,
        // A step of one saga (a smoke run) has no span: a millisecond.
        per_second: count as f64 / ((last - first).max(1.0) / 1000.0),
    }
}

/// The capacity curve: each rate of [`RATES`] after the warm-up, up to
/// and including the first the fleet does not keep up with.
async fn curve(fleet: &Fleet) -> Vec<Step> {
    warm_up(fleet).await;
    let mut steps: Vec<Step> = Vec::new();
    let mut finished = WARM_UP;
    for rate in RATES {
        let step = step(fleet, rate, finished).await;
        finished += step.orders;
        let kept_up = step.kept_up();
        println!(
            "{rate} orders/s: {:.1} sagas/s, p50 {:.3} s, p99 {:.3} s",
            step.per_second,
            step.p(50.0),
            step.p(99.0)
        );
        steps.push(step);
        if !kept_up {
            break;
        }
    }
    steps
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
    let mut runs = Vec::with_capacity(reference_orders());
    for (i, order) in order_ids("direct", reference_orders())
        .into_iter()
        .enumerate()
    {
        let due = Duration::from_secs_f64(i as f64 / REFERENCE_RATE);
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
            let erp_command =
                sluice_testkit::samples::sale_order_create(&order, Some(step.clone()));
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
    let mut times = Vec::with_capacity(reference_orders());
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
    let fleet = Fleet::unobserved("bench").await;
    let (orchestrator, _) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    let erp = fleet.erp_sink(ERP_REQUESTS_PER_SECOND).await;
    let sheets = fleet.sheets_sink().await;
    let processes = [
        ("saga-orchestrator", orchestrator.0.id()),
        ("outbox-relay (saga outbox)", relay.0.id()),
        ("erp-sink", erp.0.id()),
        ("sheets-sink", sheets.0.id()),
    ];
    let usage = || processes.map(|(_, pid)| Usage::of(pid).expect("a running process's /proc"));
    let postgres = || tree_cpu_secs(postmaster()).expect("the stack's Postgres");
    let (started, postgres_started) = (usage(), postgres());

    let steps = curve(&fleet).await;
    let (busy, postgres_busy) = (usage(), postgres());
    // Idle: every saga done, nothing left in flight.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = usage();
    drop(orchestrator);
    let direct_times = direct(&fleet).await;
    let sagas_run = (WARM_UP + steps.iter().map(|s| s.orders).sum::<usize>()) as f64;

    let dir = sluice_testkit::bench_results_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("offered,completed_per_second,p50_s,p99_s\n");
    for step in &steps {
        writeln!(
            csv,
            "{},{:.2},{:.4},{:.4}",
            step.rate,
            step.per_second,
            step.p(50.0),
            step.p(99.0)
        )
        .unwrap();
    }
    std::fs::write(dir.join("saga-curve.csv"), csv).unwrap();
    let mut report = report(
        &steps,
        &direct_times,
        &processes,
        [&started, &busy, &idle],
        sagas_run,
    );
    writeln!(
        report,
        "\nPostgres (the whole server: the sagas' transactions, the outbox slot's walsender, the registry's reads): {:.0} CPU s per 100 000 sagas.",
        (postgres_busy - postgres_started) / sagas_run * 100_000.0
    )
    .unwrap();
    let file = dir.join("saga-orchestrator.md");
    std::fs::write(&file, &report).unwrap();
    println!("{report}\nwritten to {}", file.display());
    fleet.finish(relay).await;
}

/// The local stack's Postgres server: its postmaster's pid.
fn postmaster() -> u32 {
    let file = Stack::get().local_dir.join("postgres/data/postmaster.pid");
    let text = std::fs::read_to_string(&file).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// erp-sink's pace: far above what the curve asks (five calls a saga —
/// the order looked up, its customer looked up and made, the order made
/// and confirmed — at most 400 sagas/s), so that the orchestrator, not a
/// quota, is measured.
const ERP_REQUESTS_PER_SECOND: u32 = 5_000;

/// The page: the curve against the reference, then each process's cost.
fn report(
    steps: &[Step],
    direct: &[f64],
    processes: &[(&str, u32)],
    [started, busy, idle]: [&[Usage; 4]; 3],
    sagas_run: f64,
) -> String {
    let (d50, d99) = (percentile(direct, 50.0), percentile(direct, 99.0));
    let target = TARGET.as_secs_f64();
    let offered = offered_for().as_secs_f64();
    let mut report = String::new();
    writeln!(report, "# saga-orchestrator benchmark\n").unwrap();
    writeln!(
        report,
        "Order fulfilment sagas offered at rising rates, {offered} s each, after {WARM_UP} untimed sagas through the fleet, until the fleet falls behind (p99 over the {target} s target, or under {KEEPING_UP} × the offered rate completed); release binaries of saga-orchestrator, outbox-relay, erp-sink ({ERP_REQUESTS_PER_SECOND} requests/s) and sheets-sink (batches), the sandbox without quotas in the benchmark process; broker, Postgres and registry on the same 2 cores. A saga's completion runs from the order's occurred_at to the commit that confirmed it. Reference: the same two commands per order straight to the sinks at {REFERENCE_RATE} orders/s, each after the last one's result ({} orders): p50 {d50:.3} s, p99 {d99:.3} s.\n",
        direct.len()
    )
    .unwrap();
    writeln!(
        report,
        "| offered orders/s | orders | sagas completed/s | × offered | p50 s | p99 s | p50 × reference | p99 × reference | p99 × 5 s target |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    for step in steps {
        let (p50, p99) = (step.p(50.0), step.p(99.0));
        writeln!(
            report,
            "| {} | {} | {:.1} | {:.2} | {p50:.3} | {p99:.3} | {:.2} | {:.2} | {:.2} |",
            step.rate,
            step.orders,
            step.per_second,
            step.per_second / step.rate,
            p50 / d50,
            p99 / d99,
            p99 / target
        )
        .unwrap();
    }
    let kept: Vec<_> = steps.iter().filter(|s| s.kept_up()).collect();
    match kept.last() {
        Some(best) if kept.len() == steps.len() => writeln!(
            report,
            "\nThe fleet kept up with every rate offered, up to {} orders/s.",
            best.rate
        ),
        Some(best) => writeln!(
            report,
            "\nHighest rate sustained: {} orders/s; it fell behind at {}.",
            best.rate,
            steps[kept.len()].rate
        ),
        None => writeln!(report, "\nThe fleet fell behind at the first rate."),
    }
    .unwrap();
    writeln!(
        report,
        "\n![Saga completion against the offered rate](saga-curve.png)\n\n| process | RSS idle after the run (MiB) | peak RSS (MiB) | CPU s per 100 000 sagas |\n|---|---:|---:|---:|"
    )
    .unwrap();
    for (i, (name, _)) in processes.iter().enumerate() {
        writeln!(
            report,
            "| {name} | {:.1} | {:.1} | {:.0} |",
            idle[i].rss_kib as f64 / 1024.0,
            idle[i].peak_kib as f64 / 1024.0,
            (busy[i].cpu_secs - started[i].cpu_secs) / sagas_run * 100_000.0
        )
        .unwrap();
    }
    report
}
