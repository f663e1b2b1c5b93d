//! sheets-sink under load against a misbehaving sandbox: 10 000 commands
//! while 20 % of calls fail with 500, 429s come in bursts and the API is
//! down for 30 s — afterwards one row per key with its latest value, nothing
//! dead-lettered, and the breaker went open → half-open → closed. And the
//! limiter's pace, read from the sandbox's request log, and the default pace
//! against Sheets' per-user quota.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::time::Duration;

use common::{
    Tuning, audited, command, faults, grid, grid_of, id, request_log, request_times, sandbox,
    start_with,
};
use serde_json::{Value, json};
use sluice_contracts::types::{AuditRecord, SheetRowUpsert};
use sluice_resilience::{BreakerConfig, LimiterConfig, RetryPolicy};
use sluice_testkit::{
    Pace, TestTopic, breaker_transitions, committed_total, eventually, message_count,
};

const COMMANDS: u32 = 10_000;
const KEYS: u32 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_through_500s_429s_and_an_outage() {
    let metrics = sluice_telemetry::prometheus_handle().unwrap();
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-load", 3).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-load-dlq", 1).await;
    faults(
        &base,
        json!({"error_rates": {"500": 0.2}, "burst_429": 5, "retry_after_secs": 1}),
    )
    .await;
    // The breaker guards each call: three 500s in a row (0.8 % of calls at
    // a 20 % error rate) open it.
    let tuning = Tuning {
        breaker: BreakerConfig {
            failure_threshold: 3,
            failure_rate: None,
            slow_call: None,
            open_wait: Duration::from_secs(2),
            half_open_permits: 1,
            success_threshold: 2,
        },
        retry: RetryPolicy {
            max_retries: 10,
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(500),
            multiplier: 2.0,
            jitter: 0.2,
            max_elapsed: None,
        },
        ..Tuning::quick()
    };
    let group = tuning.group.clone();
    let stop = start_with(&base, &key, &topic.name, &dlq.name, tuning);
    // Keys spread over three sheets: writes to one sheet are serialised.
    let commands: Vec<SheetRowUpsert> = (0..COMMANDS)
        .map(|n| {
            let key = n % KEYS;
            let mut command = command(&id(n), &format!("k-{key}"), &format!("v{n}"), None);
            command.sheet = format!("Sheet{}", key % 3);
            command
        })
        .collect();
    let begun = std::time::Instant::now();
    let (first, second) = commands.split_at(COMMANDS as usize / 2);
    common::send(&topic.name, first).await;

    // Once the first half is applied: a 30 s outage, then another burst of
    // 429s, the 500s going on, while the second half comes.
    eventually("the first half applied", common::WAIT * 3, || async {
        let committed = committed_total(&group, &topic.name, 3).await;
        (committed >= i64::from(COMMANDS / 2)).then_some(())
    })
    .await;
    faults(
        &base,
        json!({"error_rates": {"500": 0.2}, "outage_secs": 30, "burst_429": 5, "retry_after_secs": 1}),
    )
    .await;
    common::send(&topic.name, second).await;

    let expected: HashMap<String, String> = (COMMANDS - KEYS..COMMANDS)
        .map(|n| (format!("k-{}", n % KEYS), format!("v{n}")))
        .collect();
    let started = std::time::Instant::now();
    let rows = loop {
        let mut rows = Vec::new();
        for sheet in 0..3 {
            rows.extend(
                grid_of(&base, &format!("Sheet{sheet}"))
                    .await
                    .into_iter()
                    .skip(1),
            );
        }
        let done = rows.len() == expected.len()
            && rows.iter().all(|row| {
                expected
                    .get(row[0].as_str().unwrap_or_default())
                    .map(String::as_str)
                    == row.get(1).and_then(Value::as_str)
            });
        if done {
            break rows;
        }
        assert!(
            started.elapsed() < Duration::from_secs(420),
            "after 420 s, {} rows; not all at their last value",
            rows.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    stop.send(()).unwrap();

    let keys: HashSet<&str> = rows.iter().map(|row| row[0].as_str().unwrap()).collect();
    assert_eq!(keys.len(), KEYS as usize, "one row per key");
    assert_eq!(message_count(&dlq.name), 0, "nothing dead-lettered");
    let log = request_log(&base).await;
    let count = |status: i64| log.iter().filter(|r| r["status"] == status).count();
    let rendered = metrics.render();
    let (open, half_open, closed) = breaker_transitions(&rendered, "sheets");
    eprintln!(
        "{COMMANDS} commands, {KEYS} keys, in {:.1} s: {} Sheets requests ({} × 200, {} × 500, {} × 503, {} × 429); breaker → open {open}, → half-open {half_open}, → closed {closed}",
        begun.elapsed().as_secs_f64(),
        log.len(),
        count(200),
        count(500),
        count(503),
        count(429)
    );
    assert!(
        count(503) > 0 && count(429) > 0 && count(500) > 0,
        "the faults happened"
    );
    assert!(
        open > 0.0 && half_open > 0.0 && closed > 0.0,
        "breaker open {open}, half-open {half_open}, closed {closed}\n{rendered}"
    );

    // Every command applied is on the audit trail, in records of a
    // spreadsheet's rows per write, not one per row (the binary's other
    // tests use these ids too, in sheet Orders).
    let ids: Vec<String> = (0..COMMANDS).map(id).collect();
    let (records, entries) = eventually("every command audited", common::WAIT, || {
        let ids = &ids;
        async move {
            let mine = |subject: &str| subject.starts_with("s1/Sheet");
            let trail: Vec<AuditRecord> = audited(ids)
                .await
                .into_iter()
                .filter(|r| mine(&r.subject) || r.rows.iter().flatten().any(|r| mine(&r.subject)))
                .collect();
            let records = trail.len();
            let entries: Vec<AuditRecord> =
                trail.into_iter().flat_map(AuditRecord::entries).collect();
            let named: HashSet<&str> = entries
                .iter()
                .filter_map(|e| e.command_id.as_deref())
                .collect();
            ids.iter()
                .all(|id| named.contains(id.as_str()))
                .then_some((records, entries))
        }
    })
    .await;
    assert!(
        entries
            .iter()
            .all(|e| e.outcome == "APPLIED" && e.subject.starts_with("s1/Sheet")),
        "{:?}",
        entries.iter().find(|e| e.outcome != "APPLIED")
    );
    assert!(
        records * 2 < entries.len(),
        "{records} records for {} rows",
        entries.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_holds_the_request_rate() {
    const RATE: f64 = 20.0;
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-rate", 3).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-rate-dlq", 1).await;
    let stop = start_with(
        &base,
        &key,
        &topic.name,
        &dlq.name,
        Tuning {
            limiter: LimiterConfig {
                capacity: NonZeroU32::new(1).unwrap(),
                refill_per_second: RATE,
            },
            // One command per request, so there are requests to time.
            max_batch: 1,
            ..Tuning::quick()
        },
    );
    let commands: Vec<SheetRowUpsert> = (0..200)
        .map(|n| command(&id(n), &format!("r-{n}"), "x", None))
        .collect();
    common::send(&topic.name, &commands).await;
    eventually("every row", common::WAIT, || {
        let base = &base;
        async move { (grid(base).await.len() == 201).then_some(()) }
    })
    .await;
    stop.send(()).unwrap();

    let pace = Pace::of(&request_times(&base).await);
    eprintln!(
        "limiter at {RATE}/s, burst 1: {} requests, {:.2}/s achieved, busiest second {}",
        pace.requests, pace.per_second, pace.busiest_second
    );
    // In any second, at most the bucket (1) plus a second's refill (and
    // what delivery jitter moves into it).
    assert!(
        pace.busiest_second <= sluice_testkit::most_in_a_second(1, RATE),
        "busiest second: {} requests",
        pace.busiest_second
    );
    assert!(
        (pace.per_second - RATE).abs() / RATE <= 0.05,
        "achieved {:.2}/s against {RATE}/s",
        pace.per_second
    );
}

/// The account's quota is the fleet's: three replicas of one group, each
/// configured with the whole rate, pace to their partitions' share and
/// together keep to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_keep_to_the_accounts_rate_together() {
    const RATE: f64 = 12.0;
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-shared-rate", 6).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-shared-rate-dlq", 1).await;
    let group = sluice_testkit::unique_name("sheets-shared-rate");
    let replicas: Vec<_> = (0..3)
        .map(|_| {
            let tuning = Tuning {
                limiter: LimiterConfig {
                    capacity: NonZeroU32::MIN,
                    refill_per_second: RATE,
                },
                group: group.clone(),
                max_batch: 1,
                shared_quota: true,
                ..Tuning::quick()
            };
            start_with(&base, &key, &topic.name, &dlq.name, tuning)
        })
        .collect();
    let commands: Vec<SheetRowUpsert> = (0..120)
        .map(|n| command(&id(n), &format!("q-{n}"), "x", None))
        .collect();
    common::send(&topic.name, &commands).await;
    eventually("every row", common::WAIT, || {
        let base = &base;
        async move { (grid(base).await.len() == 121).then_some(()) }
    })
    .await;
    for stop in replicas {
        stop.send(()).unwrap();
    }
    let pace = Pace::of(&request_times(&base).await);
    eprintln!(
        "three replicas sharing {RATE}/s: {} requests, {:.2}/s together, busiest second {}",
        pace.requests, pace.per_second, pace.busiest_second
    );
    assert!(
        pace.per_second <= RATE * 1.05,
        "{:.2}/s together against {RATE}/s",
        pace.per_second
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_pace_meets_the_per_user_quota() {
    const ROWS: u32 = 75;
    let (base, key) = sandbox().await;
    // Sheets: 60 write requests per minute per user, then 429.
    faults(&base, json!({"quota_per_minute": 60})).await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-quota", 3).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-quota-dlq", 1).await;
    let stop = start_with(
        &base,
        &key,
        &topic.name,
        &dlq.name,
        Tuning {
            limiter: LimiterConfig {
                capacity: NonZeroU32::new(1).unwrap(),
                refill_per_second: sluice_sheets_sink::DEFAULT_REQUESTS_PER_SECOND,
            },
            // One command per request: more than a minute's quota of writes.
            max_batch: 1,
            ..Tuning::quick()
        },
    );
    let commands: Vec<SheetRowUpsert> = (0..ROWS)
        .map(|n| command(&id(n), &format!("q-{n}"), "x", None))
        .collect();
    common::send(&topic.name, &commands).await;
    eventually("every row", Duration::from_secs(150), || {
        let base = &base;
        async move { (grid(base).await.len() == ROWS as usize + 1).then_some(()) }
    })
    .await;
    stop.send(()).unwrap();

    let log = request_log(&base).await;
    let writes = log.iter().filter(|r| r["write"] == true).count();
    let refused = log.iter().filter(|r| r["status"] == 429).count();
    eprintln!(
        "default pace ({} requests/min, burst 1) against a 60/min quota: {writes} writes, {refused} × 429",
        sluice_sheets_sink::DEFAULT_REQUESTS_PER_SECOND * 60.0
    );
    assert!(
        writes > 60,
        "more than a minute's quota was written: {writes}"
    );
    assert_eq!(refused, 0, "the quota never refused a request");
}
