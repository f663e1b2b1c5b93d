//! `sluice-demo` (`make demo`): the fleet harness's demo scenario. Starts
//! the sandbox and every service of the topology, pushes a small stream
//! through the outbox and ingest — orders (a saga each, every tenth by a
//! customer the ERP refuses) and requests, poison that is not Avro and an
//! outbox row that does not fit its contract — while Odoo fails 5 % of calls
//! and goes away for 10 s and Sheets answers a burst of 429s; then reconciles
//! every event as the chaos run does, and checks what an operator would look
//! at: a field refused by name, the stalled partition named in the log, the
//! sheet in a browser, every metric the dashboards and alerts use.
//! `deploy/local/demo.sh` starts the stack and runs it.

mod checks;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use serde_json::json;
use sluice_fleet::faults::{Fault, Scheduled};
use sluice_fleet::load::{self, Plan};
use sluice_fleet::topology::Tuning;
use sluice_fleet::{Finished, Scenario, StackArgs, Topology};

/// The demo: a small stream through the whole fleet, reconciled.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Stop the fleet once the demo is checked (what `make test` does);
    /// without it the fleet keeps running until `make demo-down`.
    #[arg(long)]
    check: bool,
    /// Where the built binaries are.
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
    /// Logs, keys, pids and the screenshot.
    #[arg(long, default_value = ".local/demo")]
    work_dir: PathBuf,
    #[command(flatten)]
    stack: StackArgs,
}

/// A partition held 3 s with commands waiting is named stalled (5m by
/// default): the ERP outage holds some.
const TUNING: Tuning = &[
    (
        "transformer",
        &["--transactional-id", "sluice-transformer-demo"],
    ),
    // The ERP answers 5 % of calls with a 500 and a command makes up to
    // six calls, so an attempt fails about one time in four: with the
    // default 5 retries a command was dead-lettered (RETRIES_EXHAUSTED, and
    // the demo's check failed) about once in 150 runs. With 10, at most 5 s
    // apart, it is once in 10^7 commands, and the last try comes within
    // 45 s, well inside the saga's ERP timeout.
    (
        "erp-sink",
        &[
            "--requests-per-second",
            "20",
            "--breaker-open-secs",
            "5",
            "--retry-initial-ms",
            "500",
            "--max-retries",
            "10",
            "--retry-max-ms",
            "5000",
            "--partition-stall-after",
            "3s",
        ],
    ),
];

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let version = env!("CARGO_PKG_VERSION");
    let harness = args
        .stack
        .harness(&args.bin_dir, &args.work_dir, args.check, version)?;
    let scenario = Scenario {
        title: "Demo",
        // 45 orders (every tenth refused: 4), 4 requests of 10 events.
        plan: Plan {
            run: format!("d{}", chrono::Utc::now().format("%H%M%S")),
            requests: 4,
            orders: 45,
            refuse_every: 10,
        },
        rate: 40.0,
        faults: vec![
            Scheduled {
                at: Duration::ZERO,
                fault: Fault::Storm {
                    api: "sheets",
                    what: "a burst of three 429s",
                    faults: json!({"burst_429": 3, "retry_after_secs": 1}),
                    lasts: Duration::from_secs(20),
                },
            },
            Scheduled {
                at: Duration::from_secs(1),
                fault: Fault::Storm {
                    api: "odoo",
                    what: "10 s outage",
                    faults: json!({"outage_secs": 10}),
                    lasts: Duration::from_secs(10),
                },
            },
        ],
        seed: 0,
        poison: 1,
        odoo_baseline: json!({"reject_value": load::REFUSED_CUSTOMER, "error_rates": {"500": 0.05}}),
        sheets_baseline: json!({}),
        topology: Topology::Shipped(TUNING),
        settle: Duration::from_secs(300),
    };
    let plan = scenario.plan.clone();
    let finished = harness.run(scenario).await?;
    println!("{}", finished.report);
    if !finished.passed {
        for line in &finished.diagnosis {
            eprintln!("[demo] {line}");
        }
        bail!(
            "the demo's stream did not reconcile (logs in {})",
            harness.place.logs.display()
        );
    }
    checks::all(&finished, &plan, &args.work_dir).await?;
    if args.check {
        finished.stop().await;
        println!(
            "\ndemo checked; its fleet stopped (logs in {})",
            harness.place.logs.display()
        );
        return Ok(());
    }
    print_urls(&finished);
    Ok(())
}

fn print_urls(finished: &Finished) {
    let sandbox = &finished.sandbox.url;
    println!("\n== the fleet keeps running (stop it and the stack with: make demo-down)");
    println!("sandbox       {sandbox}/sheets/sluice-demo/Orders   (a page; JSON below)");
    for path in [
        "sheets/sluice-demo/Requests",
        "admin/spreadsheets/sluice-demo/Orders",
        "admin/spreadsheets/sluice-demo/Requests",
        "admin/erp/sale.order",
        "admin/requests",
    ] {
        println!("              {sandbox}/{path}");
    }
    println!(
        "ingest API    {}/v1/events (Bearer {})",
        finished.ingest, finished.token
    );
    println!(
        "sagas         ./target/debug/saga-orchestrator list   (SLUICE_DATABASE_URL from .local/stack.env)"
    );
    println!(
        "dead letters  ./target/debug/dlq-replayer list --since {}",
        finished.started_at.format("%Y-%m-%dT%H:%M:%SZ")
    );
    println!("/metrics");
    for service in &finished.fleet.services {
        println!(
            "              {:<18} {}/metrics",
            service.spec.name, service.http
        );
    }
}
