//! `make bench`: erp-sink against the sandbox's Odoo (in this process, over
//! loopback HTTP), all in this run on this machine:
//!
//! - reference: the sink's applier called directly with the same commands,
//!   six references at a time as six partitions would (no Kafka, no Avro,
//!   no results): what the ERP path allows;
//! - sink: the sink in its consumer loop on a preloaded topic, limiter off,
//!   timed until its group has committed every offset (each command applied
//!   and its ErpResult acknowledged);
//! - limiter: the limiter at 50 requests/s with a burst of 1; the achieved
//!   rate from the sandbox's request log;
//! - scaling out: the sandbox answering every call 20 ms late, the sink at
//!   its default of partitions handled at once, one replica against two in
//!   one group on the same 6 partitions.
//!
//! The reference and the sink, and one replica and two, run in rounds
//! ([`rounds`]), each ratio's median reported.
//!
//! Needs the local stack; writes `bench-results/erp-sink.md`.
// A benchmark program: any failure ends it with the panic's message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::time::Instant;

use common::{Topics, Tuning, applier, command, faults, request_times, sandbox, send};
use serde_json::json;
use sluice_contracts::types::{ErpCommand, ErpOperation};
use sluice_erp_sink::cli::Erp;
use sluice_resilience::LimiterConfig;
use sluice_service::Defaults;
use sluice_testkit::{
    Pace, Scaling, median, per_second_over, rounds, scaled, through_replicas, unique_name,
};

/// Upserts of each run (10 000 at full scale).
fn command_count() -> u32 {
    u32::try_from(scaled(10_000, 300)).unwrap_or(u32::MAX)
}
const REFS: u32 = 2_000;
const PARTITIONS: i32 = 6;

fn unlimited() -> LimiterConfig {
    LimiterConfig {
        capacity: NonZeroU32::new(1_000).unwrap(),
        refill_per_second: 1_000_000.0,
    }
}

/// `count` upserts over `REFS` references.
fn commands(count: u32) -> Vec<ErpCommand> {
    (0..count)
        .map(|n| {
            let reference = format!("so-{}", n % REFS);
            command(n, ErpOperation::Upsert, &reference, f64::from(n), "bench")
        })
        .collect()
}

/// Runs `replicas` sinks tuned by `tuning` in one group on `count`
/// commands ([`through_replicas`]), against a sandbox answering every call
/// `latency_ms` late; commands/s from the first request to the last, and
/// the sandbox's base URL.
async fn through_sinks(
    count: u32,
    tuning: impl Fn() -> Tuning,
    replicas: usize,
    latency_ms: u64,
) -> (f64, String) {
    let base = sandbox().await;
    faults(&base, json!({ "latency_ms": latency_ms })).await;
    let topics = Topics::create("bench-erp", PARTITIONS).await;
    let group = unique_name("bench-erp");
    let start = || {
        let tuning = Tuning {
            group: group.clone(),
            ..tuning()
        };
        common::start(&base, &topics, tuning)
    };
    let all = commands(count);
    let produce = || send(&topics.commands.name, &all);
    let on = (group.as_str(), topics.commands.name.as_str(), PARTITIONS);
    through_replicas(replicas, start, produce, on, count).await;
    (per_second_over(count, &request_times(&base).await), base)
}

/// One sink, its limiter set to `limiter`, on `count` commands.
async fn through_sink(count: u32, limiter: LimiterConfig) -> (f64, String) {
    let tuning = || Tuning {
        limiter,
        ..Tuning::quick()
    };
    through_sinks(count, tuning, 1, 0).await
}

/// Upserts of each scaling run (2 000 at full scale).
fn scaling_count() -> u32 {
    u32::try_from(scaled(2_000, 60)).unwrap_or(u32::MAX)
}

/// Every Odoo call answered this late in the scaling runs.
const LATENCY_MS: u64 = 20;

/// `replicas` sinks in one group, each at erp-sink's default of commands
/// handled at once, the sandbox answering every call `LATENCY_MS` late;
/// commands/s.
async fn scaled_out(replicas: usize) -> f64 {
    let tuning = || Tuning {
        limiter: unlimited(),
        max_concurrent: <Erp as Defaults>::MAX_CONCURRENT,
        ..Tuning::quick()
    };
    through_sinks(scaling_count(), tuning, replicas, LATENCY_MS)
        .await
        .0
}

/// The applier alone, six lanes of references in parallel; commands/s.
async fn direct() -> f64 {
    let base = sandbox().await;
    let applier = std::sync::Arc::new(applier(&base, Tuning::quick().breaker, unlimited()));
    let commands = commands(command_count());
    let started = Instant::now();
    let lanes = (0..PARTITIONS as u32).map(|lane| {
        let applier = std::sync::Arc::clone(&applier);
        // Command n is for reference n % REFS; a reference stays in its lane.
        let mine: Vec<ErpCommand> = commands
            .iter()
            .enumerate()
            .filter(|(n, _)| (*n as u32 % REFS) % PARTITIONS as u32 == lane)
            .map(|(_, command)| command.clone())
            .collect();
        tokio::spawn(async move {
            for command in &mine {
                applier.apply(command).await.unwrap();
            }
        })
    });
    for lane in futures::future::join_all(lanes).await {
        lane.unwrap();
    }
    f64::from(command_count()) / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    const RATE: f64 = 50.0;
    let mut runs = Vec::new();
    for _ in 0..rounds() {
        let reference = direct().await;
        eprintln!("reference (applier, no Kafka): {reference:.0} commands/s");
        let (sink, _) = through_sink(command_count(), unlimited()).await;
        eprintln!("sink: {sink:.0} commands/s");
        runs.push((reference, sink));
    }
    let (_, base) = through_sink(
        250,
        LimiterConfig {
            capacity: NonZeroU32::new(1).unwrap(),
            refill_per_second: RATE,
        },
    )
    .await;
    let pace = Pace::of(&request_times(&base).await);
    let achieved = pace.per_second;
    eprintln!("limiter at {RATE}/s: {achieved:.2}/s achieved");
    let scaling = Scaling::measure(scaled_out).await;

    let command_count = command_count();
    let mut report = String::new();
    writeln!(report, "# erp-sink benchmark\n").unwrap();
    writeln!(
        report,
        "Sandbox Odoo in the same process over loopback HTTP; {command_count} upserts over {REFS} references (two requests each: search_read, then write or create); {PARTITIONS} partitions; release build.\n"
    )
    .unwrap();
    writeln!(
        report,
        "| round | reference: applier alone, 6 lanes (commands/s) | sink, limiter off: Kafka, Avro, ErpResult per command (commands/s) | sink ÷ reference |"
    )
    .unwrap();
    writeln!(report, "|---|---:|---:|---:|").unwrap();
    for (round, (reference, sink)) in runs.iter().enumerate() {
        let ratio = sink / reference;
        writeln!(
            report,
            "| {} | {reference:.0} | {sink:.0} | {ratio:.2} |",
            round + 1
        )
        .unwrap();
    }
    let ratios: Vec<f64> = runs
        .iter()
        .map(|(reference, sink)| sink / reference)
        .collect();
    writeln!(
        report,
        "\nSink ÷ reference, the median of the rounds (each the reference, then the sink): **{:.2}**.",
        median(&ratios)
    )
    .unwrap();
    writeln!(
        report,
        "\nLimiter set to {RATE} requests/s (burst 1): {achieved:.2}/s achieved over {} requests, {:.3} × the setting.",
        pace.requests,
        achieved / RATE
    )
    .unwrap();
    writeln!(
        report,
        "\nScaling out: the sandbox answering every call {LATENCY_MS} ms late, each replica applying up to {} commands at once (erp-sink's default), those of one reference in order and a partition's references at once, {} upserts on {PARTITIONS} partitions; one replica, then two in one group, commands/s: {}. Two ÷ one, the median of the rounds: **{:.2} ×**. A call-bound sink's ceiling is its lanes: each replica brings its own, and the references, not the partitions, bound them.",
        <Erp as Defaults>::MAX_CONCURRENT,
        scaling_count(),
        scaling.rates(),
        scaling.median(),
    )
    .unwrap();
    let dir = sluice_testkit::bench_results_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("erp-sink.md");
    std::fs::write(&file, &report).unwrap();
    println!("{report}\nwritten to {}", file.display());
}
