//! `make bench`: sheets-sink against the sandbox (in this process, over
//! loopback HTTP), all in this run on this machine:
//!
//! - sink: the sink in its consumer loop on a preloaded topic, limiter off,
//!   batches of up to 500, timed from its first request to its last;
//! - sink, unbatched: the same with one command per request;
//! - the reference of each: the sink's upserter called directly with the
//!   same commands and batch size, one lane per partition as the sink has,
//!   each lane with the commands of the partition the sink reads them from
//!   (no Kafka, no Avro, no consumer loop);
//! - limiter: one command per request, the limiter at 20/s with a burst of
//!   1; the achieved request rate from the sandbox's request log;
//! - scaling out: the sandbox answering every call 20 ms late, one command
//!   per request, the sink at its default of partitions handled at once,
//!   one replica against two in one group on the same 6 partitions.
//!
//! Each reference and its sink, and one replica and two, run in rounds
//! ([`rounds`]), each ratio's median reported.
//!
//! Needs the local stack; writes `bench-results/sheets-sink.md`.
// A benchmark program: any failure ends it with the panic's message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::time::Instant;

use common::{Tuning, command, faults, id, request_times, sandbox, start_with, upserter};
use serde_json::json;
use sluice_contracts::types::SheetRowUpsert;
use sluice_resilience::LimiterConfig;
use sluice_service::Defaults;
use sluice_sheets_sink::cli::Sheets;
use sluice_testkit::{
    Pace, Scaling, TestTopic, median, per_second_over, rounds, scaled, through_replicas,
    unique_name,
};

/// Commands of the batched runs (200 000 at full scale): at 20 000, about
/// 40 requests and a third of a second from the first to the last, the
/// run measured how the first batches filled more than the sink's pace on
/// a backlog, where its partitions pause and are fetched again every few
/// batches.
fn batched_commands() -> u32 {
    u32::try_from(scaled(200_000, 500)).unwrap_or(u32::MAX)
}
/// Commands of the unbatched runs (2 000 at full scale).
fn unbatched_commands() -> u32 {
    u32::try_from(scaled(2_000, 100)).unwrap_or(u32::MAX)
}
const KEYS: u32 = 2_000;
const PARTITIONS: i32 = 6;

fn unlimited() -> LimiterConfig {
    LimiterConfig {
        capacity: NonZeroU32::new(1_000).unwrap(),
        refill_per_second: 1_000_000.0,
    }
}

/// `count` commands over `KEYS` keys in three sheets.
fn commands(count: u32) -> Vec<SheetRowUpsert> {
    (0..count)
        .map(|n| {
            let key = n % KEYS;
            let mut command = command(&id(n), &format!("k-{key}"), &format!("v{n}"), None);
            command.sheet = format!("Sheet{}", key % 3);
            command
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
    let (base, key) = sandbox().await;
    faults(&base, json!({ "latency_ms": latency_ms })).await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "bench-sheets", PARTITIONS).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "bench-sheets-dlq", 1).await;
    let group = unique_name("bench-sheets");
    let start = || {
        let tuning = Tuning {
            group: group.clone(),
            ..tuning()
        };
        start_with(&base, &key, &topic.name, &dlq.name, tuning)
    };
    let partitions = by_partition(&commands(count));
    let produce = || {
        let sends = (0..PARTITIONS)
            .zip(&partitions)
            .map(|(partition, mine)| common::send_to(&topic.name, Some(partition), mine));
        futures::FutureExt::map(futures::future::join_all(sends), drop)
    };
    let on = (group.as_str(), topic.name.as_str(), PARTITIONS);
    through_replicas(replicas, start, produce, on, count).await;
    (per_second_over(count, &request_times(&base).await), base)
}

/// One sink, in batches of up to `max_batch`, its limiter set to
/// `limiter`, on `count` commands.
async fn through_sink(count: u32, max_batch: usize, limiter: LimiterConfig) -> (f64, String) {
    let tuning = || Tuning {
        limiter,
        max_batch,
        ..Tuning::quick()
    };
    through_sinks(count, tuning, 1, 0).await
}

/// Every Sheets call answered this late in the scaling runs.
const LATENCY_MS: u64 = 20;

/// `replicas` sinks in one group, one command per request and each at
/// sheets-sink's default of partitions handled at once, on
/// `unbatched_commands()`, the sandbox answering every call `LATENCY_MS`
/// late; commands/s.
async fn scaled_out(replicas: usize) -> f64 {
    let tuning = || Tuning {
        limiter: unlimited(),
        max_batch: 1,
        max_concurrent: <Sheets as Defaults>::MAX_CONCURRENT,
        ..Tuning::quick()
    };
    through_sinks(unbatched_commands(), tuning, replicas, LATENCY_MS)
        .await
        .0
}

/// The partition, and the reference's lane, of a command: a hash of its row
/// key, as a partitioner's. Each of the sink's partitions then holds rows
/// of every sheet, and so does each lane. The lanes were once `key % 6`,
/// which put each sheet's keys in two lanes of their own: the upserter
/// locks the sheets a batch writes, so the lanes of the reference never
/// waited on each other where the sink's batches, every one writing all
/// three sheets, always did (the reference at 118–169k commands/s, against
/// 67–94k with the lanes the sink has, in runs of the same day).
fn lane(command: &SheetRowUpsert) -> usize {
    use std::hash::BuildHasher;
    let hash = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default()
        .hash_one(&command.row_key);
    usize::try_from(hash % PARTITIONS as u64).unwrap()
}

/// `commands` split by [`lane`], in order within each, one list a
/// partition.
fn by_partition(commands: &[SheetRowUpsert]) -> Vec<Vec<SheetRowUpsert>> {
    let mut lanes = vec![Vec::new(); PARTITIONS as usize];
    for command in commands {
        lanes[lane(command)].push(command.clone());
    }
    lanes
}

/// The upserter alone, `count` commands in batches of `size`, one lane per
/// partition as the sink has (a key stays in its lane); commands/s.
async fn direct(count: u32, size: usize) -> f64 {
    let (base, key) = sandbox().await;
    let breaker = Tuning::quick().breaker;
    let upserter = std::sync::Arc::new(upserter(&base, &key, unlimited(), breaker));
    // Split before the clock starts: the reference times the upserts only.
    let partitions = by_partition(&commands(count));
    let started = Instant::now();
    let lanes = partitions.into_iter().map(|mine| {
        let upserter = std::sync::Arc::clone(&upserter);
        tokio::spawn(async move {
            for batch in mine.chunks(size) {
                upserter.upsert(batch).await.unwrap();
            }
        })
    });
    for lane in futures::future::join_all(lanes).await {
        lane.unwrap();
    }
    f64::from(count) / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    const RATE: f64 = 20.0;
    // Per round: (reference, sink) batched, then unbatched.
    let mut runs = Vec::new();
    for _ in 0..rounds() {
        let reference = direct(batched_commands(), 500).await;
        eprintln!("upserter alone, batches of 500: {reference:.0} commands/s");
        let (batched, _) = through_sink(batched_commands(), 500, unlimited()).await;
        eprintln!("sink, batches ≤ 500: {batched:.0} commands/s");
        let single_reference = direct(unbatched_commands(), 1).await;
        eprintln!("upserter alone, one command per call: {single_reference:.0} commands/s");
        let (unbatched, _) = through_sink(unbatched_commands(), 1, unlimited()).await;
        eprintln!("sink, unbatched: {unbatched:.0} commands/s");
        runs.push([(reference, batched), (single_reference, unbatched)]);
    }
    let (_, base) = through_sink(
        300,
        1,
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

    let (batched_commands, unbatched_commands) = (batched_commands(), unbatched_commands());
    let mut report = String::new();
    writeln!(report, "# sheets-sink benchmark\n").unwrap();
    writeln!(
        report,
        "Sandbox in the same process over loopback HTTP; {batched_commands} commands over {KEYS} keys in 3 sheets (unbatched: {unbatched_commands}); {PARTITIONS} partitions, the reference's {PARTITIONS} lanes holding the commands of the sink's {PARTITIONS} partitions (one hash of the row key picks both: a lane's batches write every sheet, as the sink's do); release build.\n"
    )
    .unwrap();
    writeln!(
        report,
        "| round | commands per request | reference: upserter alone, {PARTITIONS} lanes (commands/s) | sink on Kafka, limiter off (commands/s) | sink ÷ reference |"
    )
    .unwrap();
    writeln!(report, "|---|---|---:|---:|---:|").unwrap();
    for (round, pairs) in runs.iter().enumerate() {
        for (name, (reference, sink)) in ["up to 500 (batched)", "1"].iter().zip(pairs) {
            writeln!(
                report,
                "| {} | {name} | {reference:.0} | {sink:.0} | {:.2} |",
                round + 1,
                sink / reference
            )
            .unwrap();
        }
    }
    let of = |pair: usize| -> Vec<f64> {
        runs.iter()
            .map(|pairs| pairs[pair].1 / pairs[pair].0)
            .collect()
    };
    let batching: Vec<f64> = runs
        .iter()
        .map(|[(_, batched), (_, unbatched)]| batched / unbatched)
        .collect();
    writeln!(
        report,
        "\nSink ÷ reference, the median of the rounds (each the reference, then the sink): batched **{:.2}**, unbatched **{:.2}**. Batching: the sink does {:.1} × the commands per second it does one command per request (the median).",
        median(&of(0)),
        median(&of(1)),
        median(&batching),
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
        "\nScaling out: the sandbox answering every call {LATENCY_MS} ms late, one command per request, each replica handling up to {} partitions at once (sheets-sink's default), {unbatched_commands} commands on {PARTITIONS} partitions; one replica, then two in one group, commands/s: {}. Two ÷ one, the median of the rounds: **{:.2} ×**. Two replicas handle all {PARTITIONS} partitions at once where one handles {}: the ceiling of a call-bound sink is its lanes, and its partitions bound those.",
        <Sheets as Defaults>::MAX_CONCURRENT,
        scaling.rates(),
        scaling.median(),
        <Sheets as Defaults>::MAX_CONCURRENT,
    )
    .unwrap();
    let dir = sluice_testkit::bench_results_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sheets-sink.md");
    std::fs::write(&file, &report).unwrap();
    println!("{report}\nwritten to {}", file.display());
}
