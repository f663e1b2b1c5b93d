//! `sluice-chaos`: the whole fleet on the local stack under fire. Drives a
//! mixed stream (outbox rows and HTTP events, requests and saga orders),
//! meanwhile SIGKILLs every service at random moments; on the three-node
//! Kafka cluster restarts a node, SIGKILLs the node leading the most
//! partitions and the transaction coordinator's, cuts one off; SIGKILLs and
//! restarts Postgres; and runs the sandbox's APIs through error storms
//! and outages; then reconciles every accepted event against Kafka, the
//! sandbox's sheets and ERP records, the saga table and the dead letters,
//! writes the report, and exits 1 if anything was lost, applied twice or
//! dead-lettered that was not poison. `deploy/local/chaos.sh` (`make chaos`)
//! starts the stack it runs on. The harness is `sluice-fleet`'s; this is
//! the chaos scenario of it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;
use sluice_fleet::load::{self, Plan};
use sluice_fleet::topology::{SERVICES, Tuning};
use sluice_fleet::{Scenario, StackArgs, Topology, faults};

/// The fleet under fire, then every event reconciled.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Source events in all (requests' ten events each, plus the orders).
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Orders among them, each a saga.
    #[arg(long, default_value_t = 5_000)]
    sagas: usize,
    /// Events per second offered, both sources together.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// SIGKILLs of each service during the load.
    #[arg(long, default_value_t = 5)]
    kills_per_service: usize,
    /// Non-Avro values per event topic, and unfit outbox rows.
    #[arg(long, default_value_t = 5)]
    poison: usize,
    /// Every n-th order is by the customer the ERP refuses.
    #[arg(long, default_value_t = 50)]
    refuse_every: usize,
    /// Seed of the fault schedule (default: the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The code under test, named in the report (chaos.sh passes
    /// `git describe --always --dirty`).
    #[arg(long, default_value = "unknown")]
    code_version: String,
    /// Where the built binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Logs, keys and the like.
    #[arg(long, default_value = ".local/chaos/run")]
    work_dir: PathBuf,
    /// The report.
    #[arg(long, default_value = "bench-results/chaos.md")]
    out: PathBuf,
    /// Longest wait, after the load, for every effect to be in place.
    #[arg(long, default_value_t = 900)]
    settle_secs: u64,
    #[command(flatten)]
    stack: StackArgs,
}

/// The transformer's transactional id: its coordinator's node is killed.
const TRANSACTIONAL_ID: &str = "sluice-transformer-chaos";

/// Rates high enough for the load. (The saga's shipped step timeouts, 180 s
/// with two retries, wait out an outage or a kill.)
const TUNING: Tuning = &[
    ("transformer", &["--transactional-id", TRANSACTIONAL_ID]),
    (
        "sheets-sink",
        &[
            "--requests-per-second",
            "100",
            "--burst",
            "20",
            "--breaker-open-secs",
            "5",
            "--max-retries",
            "30",
        ],
    ),
    (
        "erp-sink",
        &[
            "--requests-per-second",
            "400",
            "--burst",
            "50",
            "--breaker-open-secs",
            "5",
            "--retry-initial-ms",
            "200",
            "--max-retries",
            "30",
        ],
    ),
];

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.sagas >= args.events || (args.events - args.sagas) % load::EVENTS_PER_REQUEST != 0 {
        bail!(
            "--events minus --sagas must be a positive multiple of {} (each request has that many events)",
            load::EVENTS_PER_REQUEST
        );
    }
    let plan = Plan {
        run: format!("c{}", chrono::Utc::now().format("%H%M%S")),
        requests: (args.events - args.sagas) / load::EVENTS_PER_REQUEST,
        orders: args.sagas,
        refuse_every: args.refuse_every,
    };
    let seed = args
        .seed
        .unwrap_or_else(|| u64::from(chrono::Utc::now().timestamp_subsec_nanos()));
    let window = Duration::from_secs_f64(plan.events() as f64 / args.rate);
    let harness = args
        .stack
        .harness(&args.bin_dir, &args.work_dir, true, &args.code_version)?;
    // Every service is killed; dlq-replayer is a CLI, not a running service.
    let scenario = Scenario {
        title: "Chaos run",
        faults: faults::schedule(
            seed,
            window,
            &SERVICES,
            args.kills_per_service,
            TRANSACTIONAL_ID,
        ),
        plan,
        rate: args.rate,
        seed,
        poison: args.poison,
        odoo_baseline: json!({"reject_value": load::REFUSED_CUSTOMER}),
        sheets_baseline: json!({}),
        topology: Topology::Shipped(TUNING),
        settle: Duration::from_secs(args.settle_secs),
    };
    let finished = harness.run(scenario).await?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).context("creating the report's folder")?;
    }
    std::fs::write(&args.out, &finished.report)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}\nwritten to {}", finished.report, args.out.display());
    let (passed, diagnosis) = (finished.passed, finished.diagnosis.clone());
    finished.stop().await;
    if !passed {
        for line in diagnosis {
            eprintln!("[chaos] {line}");
        }
        bail!("the chaos run failed: see {}", args.out.display());
    }
    Ok(())
}
