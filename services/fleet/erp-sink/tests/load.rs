//! erp-sink under load against a misbehaving ERP: 10 000 commands while
//! 20 % of calls fail with 500, 429s come in bursts and the ERP is down for
//! 30 s — afterwards one record per external reference at its latest values,
//! a result for every command, nothing dead-lettered, and the breaker went
//! open → half-open → closed. And the limiter's pace, read from the
//! sandbox's request log.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use common::{
    Topics, Tuning, by_ref, command, faults, records, request_log, request_times, results, sandbox,
};
use serde_json::json;
use sluice_contracts::types::{ErpCommand, ErpOperation, ErpOutcome};
use sluice_resilience::{BreakerConfig, LimiterConfig, RetryPolicy};
use sluice_testkit::{Pace, breaker_transitions, committed_total, eventually, message_count};

const COMMANDS: u32 = 10_000;
const REFS: u32 = 1_000;

/// Command `n` for reference `so-{n % REFS}`: its first is a CREATE, the
/// later ones UPDATEs setting amount `n`.
fn nth(n: u32) -> ErpCommand {
    let operation = if n < REFS {
        ErpOperation::Create
    } else {
        ErpOperation::Update
    };
    command(
        n,
        operation,
        &format!("so-{}", n % REFS),
        f64::from(n),
        "load",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_through_500s_429s_and_an_outage() {
    let metrics = sluice_telemetry::prometheus_handle().unwrap();
    let base = sandbox().await;
    let topics = Topics::create("erp-load", 6).await;
    faults(
        &base,
        json!({"error_rates": {"500": 0.2}, "burst_429": 5, "retry_after_secs": 1}),
    )
    .await;
    let tuning = Tuning {
        // 5, not the ERP's default 3: three 500s in a row come every ~125
        // calls at a 20 % error rate, and each would stop the flow for the
        // open wait; five in a row are rare, an outage's first calls are not.
        breaker: BreakerConfig {
            failure_threshold: 5,
            failure_rate: None,
            slow_call: None,
            open_wait: Duration::from_secs(2),
            half_open_permits: 1,
            success_threshold: 2,
        },
        // 30, not 10: an attempt is two requests (search_read, then create
        // or write), so at 20 % 500s it fails with p ≈ 0.36, and 11 failed
        // attempts in a row (0.36¹¹ ≈ 1.3e-5) came to about one command in
        // eight runs of 10 000 — given up as RETRIES_EXHAUSTED, and CI saw
        // it as a missing record, an older amount, a REJECTED result. The
        // test is about the faults not losing or doubling anything, not
        // about the budget; 0.36³¹ never comes.
        retry: RetryPolicy {
            max_retries: 30,
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(500),
            multiplier: 2.0,
            jitter: 0.2,
            max_elapsed: None,
        },
        ..Tuning::quick()
    };
    let group = tuning.group.clone();
    let stop = common::start(&base, &topics, tuning);
    let begun = Instant::now();
    let commands: Vec<ErpCommand> = (0..COMMANDS).map(nth).collect();
    let (first, second) = commands.split_at(COMMANDS as usize / 2);
    common::send(&topics.commands.name, first).await;

    // Once the first half is applied: a 30 s outage, then another burst of
    // 429s, the 500s going on, while the second half comes.
    eventually("the first half applied", common::WAIT * 3, || async {
        let committed = committed_total(&group, &topics.commands.name, 6).await;
        (committed >= i64::from(COMMANDS / 2)).then_some(())
    })
    .await;
    faults(
        &base,
        json!({"error_rates": {"500": 0.2}, "outage_secs": 30, "burst_429": 5, "retry_after_secs": 1}),
    )
    .await;
    common::send(&topics.commands.name, second).await;
    eventually(
        "every command settled",
        Duration::from_secs(420),
        || async {
            let committed = committed_total(&group, &topics.commands.name, 6).await;
            (committed >= i64::from(COMMANDS)).then_some(())
        },
    )
    .await;
    let elapsed = begun.elapsed();
    stop.send(()).unwrap();

    // One record per reference, at the amount of its last command.
    let erp = by_ref(&records(&base).await);
    assert_eq!(erp.len(), REFS as usize, "one record per reference");
    let expected: BTreeMap<String, f64> = (COMMANDS - REFS..COMMANDS)
        .map(|n| (format!("so-{}", n % REFS), f64::from(n)))
        .collect();
    for (reference, amount) in &expected {
        assert_eq!(erp[reference]["amount_total"], json!(amount), "{reference}");
    }
    // A result for every command, none refused.
    let count = usize::try_from(message_count(&topics.results.name)).unwrap();
    let results = results(&topics.results.name, count).await;
    let answered: HashSet<&str> = results.iter().map(|r| r.command_id.as_str()).collect();
    assert_eq!(answered.len(), COMMANDS as usize, "a result per command");
    let refused: Vec<_> = results
        .iter()
        .filter(|r| r.outcome == ErpOutcome::Rejected)
        .map(|r| (&r.external_ref, r.attempts, &r.error))
        .collect();
    assert!(refused.is_empty(), "nothing refused: {refused:?}");
    assert_eq!(message_count(&topics.dlq.name), 0, "nothing dead-lettered");

    let log = request_log(&base).await;
    let status = |code: i64| log.iter().filter(|r| r["status"] == code).count();
    let rendered = metrics.render();
    let (open, half_open, closed) = breaker_transitions(&rendered, "erp");
    eprintln!(
        "{COMMANDS} commands, {REFS} references, in {:.1} s: {} Odoo requests ({} × 200, {} × 500, {} × 503, {} × 429), {} results ({} already applied); breaker → open {open}, → half-open {half_open}, → closed {closed}",
        elapsed.as_secs_f64(),
        log.len(),
        status(200),
        status(500),
        status(503),
        status(429),
        results.len(),
        results
            .iter()
            .filter(|r| r.outcome == ErpOutcome::AlreadyApplied)
            .count(),
    );
    assert!(
        status(503) > 0 && status(429) > 0 && status(500) > 0,
        "the faults happened"
    );
    assert!(
        open > 0.0 && half_open > 0.0 && closed > 0.0,
        "breaker open {open}, half-open {half_open}, closed {closed}\n{rendered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_holds_the_request_rate() {
    const RATE: f64 = 25.0;
    let base = sandbox().await;
    let topics = Topics::create("erp-rate", 3).await;
    let stop = common::start(
        &base,
        &topics,
        Tuning {
            limiter: LimiterConfig {
                capacity: NonZeroU32::new(1).unwrap(),
                refill_per_second: RATE,
            },
            ..Tuning::quick()
        },
    );
    let commands: Vec<ErpCommand> = (0..150)
        .map(|n| command(n, ErpOperation::Create, &format!("r-{n}"), 1.0, "rate"))
        .collect();
    common::send(&topics.commands.name, &commands).await;
    eventually("every record", common::WAIT, || {
        let base = &base;
        async move { (records(base).await.len() == 150).then_some(()) }
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
