//! `make bench`: what a user waits for, end to end, through the topology the
//! chart deploys ([`sluice_fleet::topology`]: both relays, the transformer
//! with the shipped rules, both sinks, ingest and the saga orchestrator, each
//! its built binary; the sandbox binary as Sheets and Odoo):
//!
//! - events offered at 100 and 1 000 events/s for 20 s each, alternately
//!   posted to ingest one per request (its 202 timed) and committed to the
//!   business outbox one per transaction; all RequestCreated (a new row of
//!   the Requests sheet each) but 10 OrderPlaced a second (a sale order
//!   each, made by the order fulfilment saga);
//! - each event timed from its send (ingest) or its commit (outbox) to the
//!   moment its row, or its sale order, is first seen in the sandbox, read
//!   every 10 ms for what was added since the last read;
//! - reference: the same load as the commands the sinks take, produced
//!   straight to their topics at the same rates (a row upsert per request, a
//!   sale order create per order) and timed from the send to the same
//!   moment: the sinks and the sandbox alone, without ingest, the relay, the
//!   transformer or the saga.
//!
//! Each service's cost is read from /proc: CPU seconds per 100 000 events
//! offered over the timed runs (the references' work left out), resident
//! memory idle once the runs are done, and its peak. Needs the local stack;
//! writes `bench-results/end-to-end.md`.
// A benchmark program: any failure ends it with the panic's message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bin_dir;
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};
use sluice_avro::AvroCodec;
use sluice_contracts::types::{ScalarValue, SheetCell, SheetRowUpsert};
use sluice_fleet::cost::{Sampled, sample};
use sluice_fleet::topology::{self, Wiring};
use sluice_fleet::{Fleet, Sandbox, StackArgs, scrape_sum};
use sluice_testkit::samples::sale_order_create;
use sluice_testkit::{
    Stack, free_port, percentile, producer, scaled_duration, token_sha256, unique_name,
};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The offered rates, events/s, both paths together.
const RATES: [f64; 2] = [100.0, 1_000.0];
/// Orders among them, a second; the saga's capacity is its own benchmark's.
const ORDERS_PER_SECOND: f64 = 10.0;
/// How long each rate is offered (20 s at full scale).
fn offered_for() -> Duration {
    scaled_duration(Duration::from_secs(20), Duration::from_secs(1))
}
/// The shipped spreadsheet; the reference writes a sheet of its own in it.
const SPREADSHEET: &str = "sluice-demo";
const REQUESTS_SHEET: &str = "Requests";
const REFERENCE_SHEET: &str = "Reference";
/// How often the sandbox is read for new rows and sale orders.
const POLL: Duration = Duration::from_millis(10);
/// Longest wait, after a run's last send, for its last row or sale order.
const SETTLE: Duration = Duration::from_secs(300);
/// Longest an ingest request may take, and longest a client tries again.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// The run's quotas are set far above the load, so that the pipeline is
/// measured, not a quota: the sandbox has none, Google's (55 requests a
/// minute by default) would hold sheets-sink to a few hundred rows a second
/// (docs/SCALING.md), and ingest's 200 requests a second per token (a
/// client's fair share) to a fifth of the ingest half at 1 000 events/s.
const TUNING: topology::Tuning = &[
    ("ingest", &["--requests-per-second-per-token", "2000"]),
    ("sheets-sink", &["--requests-per-second", "100"]),
    ("erp-sink", &["--requests-per-second", "5000"]),
];

/// What an event makes in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A RequestCreated: a row of the Requests sheet.
    Row,
    /// An OrderPlaced: a sale order, through the saga.
    Order,
}

/// How it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Path {
    /// POST /v1/events, one event per request.
    Ingest,
    /// A row of the business outbox, one per transaction.
    Outbox,
    /// The reference: the sink's command, straight to its topic.
    Direct,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Ingest => "ingest (from the POST)",
            Path::Outbox => "outbox (from the commit)",
            Path::Direct => "reference: straight to the sinks",
        }
    }
}

/// One event sent.
struct Sent {
    key: String,
    kind: Kind,
    path: Path,
    /// When it left (ingest, the reference) or was committed (outbox).
    at: Instant,
    /// How long ingest took to answer 202, from the first try.
    accepted: Option<Duration>,
    /// Tries ingest answered 429 or 503, or whose connection it closed
    /// (each sent again).
    refused: u32,
}

/// Where the load goes.
struct Target {
    ingest: String,
    token: String,
    pool: PgPool,
    codec: AvroCodec,
    http: reqwest::Client,
}

/// When each row key and each sale order's reference was first seen.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() {
    let stack = Stack::get();
    // The topology names files from the repository's root (the transformer's
    // rules), as the demo runs it; cargo runs a bench in its package.
    std::env::set_current_dir(stack.path("")).unwrap();
    let work = std::env::temp_dir().join(unique_name("bench-end-to-end"));
    let stack_args = StackArgs {
        kafka_bootstrap: stack.kafka_bootstrap.clone(),
        schema_registry_url: stack.schema_registry_url.clone(),
        database_url: stack.database_url.clone(),
    };
    let mut place = stack_args
        .harness(&bin_dir(), &work, true, "bench")
        .unwrap()
        .place;
    // What a pod's name gives each replica: its transactional ids.
    place
        .stack_env
        .push(("HOSTNAME".into(), "bench-end-to-end".into()));
    std::fs::create_dir_all(&work).unwrap();
    let key = work.join("service-account.json");
    let sheets = format!("{SPREADSHEET}=Orders,{REQUESTS_SHEET},{REFERENCE_SHEET}");
    let sandbox = Sandbox::start(&place, &key, &sheets, json!({}), json!({}))
        .await
        .unwrap();
    let token = uuid::Uuid::new_v4().to_string();
    let ingest_port = free_port();
    let wiring = Wiring {
        sandbox: &sandbox.url,
        service_account: &key,
        ingest_port,
        token_sha256: &token_sha256(&token),
    };
    // The business's outbox table, which the application owns: made as the
    // demo's scripts make it, before its relay starts.
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&stack.database_url)
        .await
        .unwrap();
    common::create_outbox(&pool, "outbox").await;
    let fleet = Fleet::start(topology::services(&wiring, TUNING), place)
        .await
        .unwrap();
    fleet
        .until_streaming(Duration::from_secs(60))
        .await
        .unwrap();
    let ready = sample(&fleet).await;
    let target = Arc::new(Target {
        ingest: format!("http://127.0.0.1:{ingest_port}"),
        token,
        pool,
        codec: AvroCodec::new(stack.registry_settings()),
        http: reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap(),
    });
    let seen: Seen = Arc::default();
    let watcher = tokio::spawn(watch(sandbox.url.clone(), Arc::clone(&seen)));

    // Every consumer joined, every schema cached, the slot's backlog of
    // earlier runs relayed: the timed runs start on a warm fleet.
    let warm_up = offer(&target, 20.0, Duration::from_secs(1), "warm-up", false).await;
    until_seen(&seen, &warm_up).await;
    // The warm-up's outbox rows came after any backlog on the slot; the
    // consumers' backlog on partitions the warm-up missed is waited for.
    until_quiet(&fleet).await;

    let mut runs = Vec::new();
    let mut cpu: BTreeMap<String, f64> = BTreeMap::new();
    let mut offered = 0usize;
    for rate in RATES {
        eprintln!("[bench] {rate}/s straight to the sinks");
        let reference = offer(&target, rate, offered_for(), &format!("ref-{rate}"), true).await;
        until_seen(&seen, &reference).await;
        until_quiet(&fleet).await;
        eprintln!("[bench] {rate}/s through the fleet");
        let before = sample(&fleet).await;
        let sent = offer(&target, rate, offered_for(), &format!("e2e-{rate}"), false).await;
        until_seen(&seen, &sent).await;
        // A saga's later steps (its row, OrderConfirmed) are the run's work.
        until_quiet(&fleet).await;
        add_cpu(&mut cpu, &before, &sample(&fleet).await);
        offered += sent.len();
        eprintln!("[bench] {rate}/s: {} events through", sent.len());
        runs.push((rate, reference, sent));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = sample(&fleet).await;
    watcher.abort();

    let seen = seen.lock().unwrap().clone();
    let report = report(&runs, &seen, &cpu, [&ready, &idle], offered);
    let dir = sluice_testkit::bench_results_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("end-to-end.md");
    std::fs::write(&file, &report).unwrap();
    println!("{report}\nwritten to {}", file.display());
    fleet.stop().await;
    sandbox.stop().await;
}

/// Sends events at `rate`/s for `during`, an order every
/// `rate / ORDERS_PER_SECOND` events, each kind alternating between ingest
/// and the outbox (or all straight to the sinks); returns them once all
/// are sent.
async fn offer(
    target: &Arc<Target>,
    rate: f64,
    during: Duration,
    label: &str,
    direct: bool,
) -> Vec<Sent> {
    let count = (rate * during.as_secs_f64()).round() as usize;
    let every = ((rate / ORDERS_PER_SECOND).round() as usize).max(1);
    // The stack keeps sagas by order id from run to run.
    let run = unique_name(label);
    let started = Instant::now();
    let (mut rows, mut orders) = (0usize, 0usize);
    let mut sends = Vec::with_capacity(count);
    for i in 0..count {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (kind, nth) = if i % every == 0 {
            orders += 1;
            (Kind::Order, orders)
        } else {
            rows += 1;
            (Kind::Row, rows)
        };
        let path = match (direct, nth % 2) {
            (true, _) => Path::Direct,
            (false, 0) => Path::Ingest,
            (false, _) => Path::Outbox,
        };
        let key = format!("lat-{run}-{i:06}");
        sends.push(tokio::spawn(send(Arc::clone(target), kind, path, key)));
    }
    let mut sent = Vec::with_capacity(count);
    for send in sends {
        sent.push(send.await.unwrap());
    }
    sent
}

async fn send(target: Arc<Target>, kind: Kind, path: Path, key: String) -> Sent {
    let (aggregate_type, event_type, payload) = event(kind, &key);
    let (mut accepted, mut refused) = (None, 0);
    let at = match path {
        Path::Ingest => {
            let event = json!({
                "event_id": uuid::Uuid::new_v4().to_string(),
                "aggregate_type": aggregate_type, "aggregate_id": key,
                "event_type": event_type, "payload": payload,
            });
            let at = Instant::now();
            refused = post(&target, &event, &key).await;
            accepted = Some(at.elapsed());
            at
        }
        Path::Outbox => {
            sqlx::query(
                "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(uuid::Uuid::new_v4())
            .bind(aggregate_type)
            .bind(&key)
            .bind(event_type)
            .bind(&payload)
            .execute(&target.pool)
            .await
            .unwrap();
            Instant::now()
        }
        Path::Direct => {
            let (topic, record_key, value) = match kind {
                Kind::Row => {
                    let topic = "sheets.rows.v1";
                    let record_key = format!("{SPREADSHEET}/{REFERENCE_SHEET}/{key}");
                    (
                        topic,
                        record_key,
                        target.codec.encode(topic, &row(&key)).await,
                    )
                }
                Kind::Order => {
                    let topic = "erp.commands.v1";
                    let value = target
                        .codec
                        .encode(topic, &sale_order_create(&key, None))
                        .await;
                    (topic, key.clone(), value)
                }
            };
            let at = Instant::now();
            producer()
                .send(
                    FutureRecord::to(topic)
                        .key(&record_key)
                        .payload(&value.unwrap()),
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
            at
        }
    };
    Sent {
        key,
        kind,
        path,
        at,
        accepted,
        refused,
    }
}

/// Posts `event` to ingest as a client does: again after a 429 or a 503,
/// once Retry-After has passed, or after a connection ingest closed (the
/// same event id: the sinks apply it once); how many tries failed before
/// the 202. No Idempotency-Key: ingest keeps those in Postgres, a cost of
/// its own.
async fn post(target: &Target, event: &Value, key: &str) -> u32 {
    let mut refused = 0;
    let deadline = Instant::now() + GIVE_UP_AFTER;
    loop {
        let sent = target
            .http
            .post(format!("{}/v1/events", target.ingest))
            .bearer_auth(&target.token)
            .json(event)
            .send()
            .await;
        let retry_after = match sent {
            Ok(response) if response.status().as_u16() == 202 => return refused,
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok()?.parse().ok())
                    .unwrap_or(1);
                let body = response.text().await.unwrap_or_default();
                assert!(
                    matches!(status, 429 | 503),
                    "ingest refused {key}: {status} {body}"
                );
                retry_after
            }
            Err(_) => 1,
        };
        refused += 1;
        assert!(
            Instant::now() < deadline,
            "ingest has not taken {key} in {} s ({refused} tries)",
            GIVE_UP_AFTER.as_secs()
        );
        tokio::time::sleep(Duration::from_secs(retry_after)).await;
    }
}

/// The event `key` stands for: its aggregate type, event type and payload.
fn event(kind: Kind, key: &str) -> (&'static str, &'static str, Value) {
    match kind {
        Kind::Row => (
            "requests",
            "RequestCreated",
            json!({"requester_email": "ada@example.org", "subject": format!("Request {key}"),
                   "description": "Please call back.", "priority": "HIGH",
                   "category": "delivery"}),
        ),
        Kind::Order => (
            "orders",
            "OrderPlaced",
            json!({"customer": {"customer_id": "c-1", "name": "Katherine Johnson",
                                "email": "katherine@example.org"},
                   "lines": [{"sku": "TEA-1", "description": "Assam", "quantity": 2,
                              "unit_price_minor": 650}],
                   "total_minor": 1300, "currency": "EUR", "shipping_country": "DE"}),
        ),
    }
}

/// The row the shipped rule makes of a RequestCreated, to the reference sheet.
fn row(key: &str) -> SheetRowUpsert {
    let cells = [
        ("Request", key.to_owned()),
        ("Subject", format!("Request {key}")),
        ("Requester", "ada@example.org".into()),
        ("Priority", "2 - high".into()),
        ("Category", "delivery".into()),
        ("Status", "OPEN".into()),
        ("Opened at", "2026-12-05 20:00 UTC".into()),
    ];
    SheetRowUpsert {
        command_id: uuid::Uuid::new_v4().to_string(),
        spreadsheet_id: SPREADSHEET.into(),
        sheet: REFERENCE_SHEET.into(),
        row_key: key.to_owned(),
        cells: cells
            .into_iter()
            .map(|(column, value)| SheetCell {
                column: column.into(),
                value: ScalarValue::String(value),
            })
            .collect(),
        source_event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: sluice_contracts::now_millis(),
        saga: None,
        correlation_id: None,
        causation_id: None,
    }
}

/// Reads the sandbox every [`POLL`] for rows and sale orders added since
/// the last read, noting when each key was first seen.
async fn watch(url: String, seen: Seen) {
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{url}/admin/{path}");
        async move {
            let response = http.get(&url).send().await.ok()?;
            response.json::<Value>().await.ok()
        }
    };
    let mut from = [0usize; 2];
    let mut after = 0i64;
    loop {
        for (sheet, from) in [REQUESTS_SHEET, REFERENCE_SHEET].into_iter().zip(&mut from) {
            let path = format!("spreadsheets/{SPREADSHEET}/{sheet}?from={from}");
            let Some(grid) = get(path).await else {
                continue;
            };
            let now = Instant::now();
            let rows = grid["values"].as_array().cloned().unwrap_or_default();
            let keys: Vec<Option<&str>> = rows.iter().map(|row| row[0].as_str()).collect();
            // Read again from the first row without a key: a row may be
            // made before its cells are written.
            *from += keys.iter().take_while(|key| key.is_some()).count();
            let mut seen = seen.lock().unwrap();
            for key in keys.into_iter().flatten() {
                seen.entry(key.to_owned()).or_insert(now);
            }
        }
        if let Some(records) = get(format!("erp/sale.order?after={after}")).await {
            let now = Instant::now();
            let mut seen = seen.lock().unwrap();
            for record in records.as_array().into_iter().flatten() {
                after = after.max(record["id"].as_i64().unwrap_or(after));
                if let Some(reference) = record["client_order_ref"].as_str() {
                    seen.entry(reference.to_owned()).or_insert(now);
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the fleet has done no work for a second (no service's
/// progress counter moved): an earlier run's backlog, or the tail of a
/// timed run's work, is done. (Consumer lag never reads 0 on a topic
/// written in transactions: its last offset is a commit marker.)
async fn until_quiet(fleet: &Fleet) {
    let deadline = Instant::now() + SETTLE;
    let (mut last, mut quiet) = (f64::NAN, 0);
    while quiet < 5 {
        let mut done = 0.0;
        for service in &fleet.services {
            if let Some(counter) = service.spec.progress {
                done += scrape_sum(&service.http, counter).await.unwrap_or(0.0);
            }
        }
        quiet = if done == last { quiet + 1 } else { 0 };
        last = done;
        assert!(
            Instant::now() < deadline,
            "the fleet still working {} s after the last event was seen",
            SETTLE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every event of `sent` has been seen in the sandbox.
async fn until_seen(seen: &Seen, sent: &[Sent]) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let missing = {
            let seen = seen.lock().unwrap();
            sent.iter().filter(|s| !seen.contains_key(&s.key)).count()
        };
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} events not in the sandbox {} s after the last was sent",
            sent.len(),
            SETTLE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Adds each replica's CPU seconds between `before` and `after` to `cpu`.
fn add_cpu(cpu: &mut BTreeMap<String, f64>, before: &Sampled, after: &Sampled) {
    for (label, (pid, usage)) in after {
        let Some((was_pid, was)) = before.get(label) else {
            continue;
        };
        assert_eq!(pid, was_pid, "{label} restarted during a timed run");
        *cpu.entry(label.clone()).or_default() += usage.cpu_secs - was.cpu_secs;
    }
}

/// p50 and p99 of `times` (ms); None when there are none.
fn p50_p99(mut times: Vec<f64>) -> Option<(f64, f64)> {
    if times.is_empty() {
        return None;
    }
    times.sort_by(f64::total_cmp);
    Some((percentile(&times, 50.0), percentile(&times, 99.0)))
}

/// Per path and kind: each event's time until seen (ms), and ingest's 202s.
struct Latencies {
    seen: BTreeMap<(Path, Kind), Vec<f64>>,
    accepted: Vec<f64>,
    refused: u32,
}

fn latencies(sent: &[Sent], seen: &HashMap<String, Instant>) -> Latencies {
    let mut all = Latencies {
        seen: BTreeMap::new(),
        accepted: Vec::new(),
        refused: 0,
    };
    for event in sent {
        let at = seen[&event.key];
        let waited = at.saturating_duration_since(event.at).as_secs_f64() * 1000.0;
        all.seen
            .entry((event.path, event.kind))
            .or_default()
            .push(waited);
        if let Some(accepted) = event.accepted {
            all.accepted.push(accepted.as_secs_f64() * 1000.0);
        }
        all.refused += event.refused;
    }
    all
}

type Run = (f64, Vec<Sent>, Vec<Sent>);

fn report(
    runs: &[Run],
    seen: &HashMap<String, Instant>,
    cpu: &BTreeMap<String, f64>,
    [ready, idle]: [&Sampled; 2],
    offered: usize,
) -> String {
    let mut report = String::new();
    writeln!(report, "# End-to-end benchmark\n").unwrap();
    writeln!(
        report,
        "Measured {} on this machine ({} cores), local stack, {} build: the shipped topology \
         (both outbox relays, the transformer with the shipped rules, sheets-sink at 100 requests/s, \
         erp-sink at 5000, ingest at 2000 requests/s per token, saga-orchestrator), the sandbox binary as Sheets and Odoo without \
         quotas. Each rate offered for {:.0} s: RequestCreated events (a new Requests row each) and \
         {ORDERS_PER_SECOND} OrderPlaced a second (a sale order each, through the saga), alternately \
         posted to ingest one per request and committed to the outbox one per transaction. An event \
         is timed from its POST, or its commit, to its row or sale order first seen in the sandbox \
         (read every {} ms). Reference: the same load as the sinks' commands produced straight to \
         their topics, timed from the send.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism().map_or(0, usize::from),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        offered_for().as_secs_f64(),
        POLL.as_millis(),
    )
    .unwrap();
    writeln!(
        report,
        "\n| offered (events/s) | path | ingest 202 p50 / p99 (ms) | event → sheet row p50 / p99 (ms) | × reference | event → ERP sale order p50 / p99 (ms) | × reference |\n|---:|---|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    let pair = |p: Option<(f64, f64)>| p.map_or("–".into(), |(a, b)| format!("{a:.0} / {b:.0}"));
    let ratio = |p: Option<(f64, f64)>, r: Option<(f64, f64)>| match (p, r) {
        (Some((a, b)), Some((ra, rb))) => format!("{:.2} / {:.2}", a / ra, b / rb),
        _ => "–".into(),
    };
    for (rate, reference, sent) in runs {
        let reference = latencies(reference, seen);
        let e2e = latencies(sent, seen);
        let of = |all: &Latencies, path, kind| {
            p50_p99(all.seen.get(&(path, kind)).cloned().unwrap_or_default())
        };
        let (ref_row, ref_order) = (
            of(&reference, Path::Direct, Kind::Row),
            of(&reference, Path::Direct, Kind::Order),
        );
        for path in [Path::Ingest, Path::Outbox] {
            let (rows, orders) = (of(&e2e, path, Kind::Row), of(&e2e, path, Kind::Order));
            let accepted = match path {
                Path::Ingest if e2e.refused > 0 => format!(
                    "{} ({} tries refused or cut, sent again)",
                    pair(p50_p99(e2e.accepted.clone())),
                    e2e.refused
                ),
                Path::Ingest => pair(p50_p99(e2e.accepted.clone())),
                _ => "–".into(),
            };
            writeln!(
                report,
                "| {rate:.0} | {} | {accepted} | {} | {} | {} | {} |",
                path.name(),
                pair(rows),
                ratio(rows, ref_row),
                pair(orders),
                ratio(orders, ref_order),
            )
            .unwrap();
        }
        writeln!(
            report,
            "| {rate:.0} | {} | – | {} | 1.00 | {} | 1.00 |",
            Path::Direct.name(),
            pair(ref_row),
            pair(ref_order)
        )
        .unwrap();
    }
    writeln!(
        report,
        "\nCost of each service (its process, from /proc): CPU seconds per 100 000 events offered \
         over the timed runs ({offered} events; the references' work left out), resident memory \
         once ready (nothing sent yet), idle after the runs, and the peak the kernel kept.\n\n\
         | service | CPU s per 100 000 events | RSS ready (MiB) | RSS idle after (MiB) | RSS peak (MiB) |\n\
         |---|---:|---:|---:|---:|"
    )
    .unwrap();
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (label, (_, usage)) in idle {
        let per = cpu.get(label).copied().unwrap_or_default() / offered as f64 * 100_000.0;
        let at_start = ready
            .get(label)
            .map_or(0.0, |(_, usage)| mib(usage.rss_kib));
        writeln!(
            report,
            "| {label} | {per:.2} | {at_start:.1} | {:.1} | {:.1} |",
            mib(usage.rss_kib),
            mib(usage.peak_kib)
        )
        .unwrap();
    }
    report
}
