//! `sluice-chaos`: the whole fleet on the local stack under fire. Drives a
//! mixed stream (outbox rows and HTTP events, requests and saga orders),
//! meanwhile SIGKILLs every service at random moments, restarts the broker
//! and Postgres once each, and runs the sandbox's APIs through error storms
//! and outages; then reconciles every accepted event against Kafka, the
//! sandbox's sheets and ERP records, the saga table and the dead letters,
//! writes the report, and exits 1 if anything was lost, applied twice or
//! dead-lettered that was not poison. `deploy/local/chaos.sh` (`make chaos`)
//! starts the stack it runs on.

mod faults;
mod fleet;
mod load;
mod reconcile;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;
use tokio::sync::Mutex;

use crate::faults::{Fault, Sandbox};
use crate::fleet::{Fleet, ServiceSpec};
use crate::load::{Driver, Ledger, Plan};
use crate::reconcile::Snapshot;

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
    /// Kafka bootstrap servers of the stack.
    #[arg(long, env = "SLUICE_KAFKA_BOOTSTRAP")]
    kafka_bootstrap: String,
    /// The registry's Confluent-compatible API.
    #[arg(long, env = "SLUICE_SCHEMA_REGISTRY_URL")]
    schema_registry_url: String,
    /// The business database (outbox, sagas).
    #[arg(long, env = "SLUICE_DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

/// The services and how many of each are killed; dlq-replayer is a CLI, not
/// a running service.
const KILLED: [&str; 7] = [
    "saga-orchestrator",
    "saga-outbox-relay",
    "outbox-relay",
    "transformer",
    "sheets-sink",
    "erp-sink",
    "ingest",
];

fn specs(
    work: &std::path::Path,
    sandbox: &str,
    ingest_port: u16,
    token_sha: &str,
) -> Vec<ServiceSpec> {
    let strings = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let key = work.join("service-account.json").display().to_string();
    vec![
        // The orchestrator first: it makes its outbox's slot before writing.
        ServiceSpec {
            name: "saga-orchestrator",
            binary: "saga-orchestrator",
            // Long step timeouts: an outage or a kill delays a reply, and a
            // saga should wait it out rather than compensate.
            args: strings(&[
                "run",
                "--erp-timeout-ms",
                "180000",
                "--sheet-timeout-ms",
                "180000",
                "--step-retries",
                "5",
            ]),
            env: vec![],
            progress: Some("sluice_consumed_total"),
        },
        ServiceSpec {
            name: "saga-outbox-relay",
            binary: "outbox-relay",
            args: strings(&[
                "--outbox-table",
                "saga.outbox",
                "--outbox-format",
                "addressed",
                "--outbox-slot",
                "sluice_saga_outbox",
                "--outbox-publication",
                "sluice_saga_outbox",
            ]),
            env: vec![],
            progress: Some("sluice_outbox_relayed_total"),
        },
        ServiceSpec {
            name: "outbox-relay",
            binary: "outbox-relay",
            args: vec![],
            env: vec![],
            progress: Some("sluice_outbox_relayed_total"),
        },
        ServiceSpec {
            name: "transformer",
            binary: "transformer",
            args: strings(&[
                "--rules",
                "services/fleet/transformer/rules.toml",
                "--transactional-id",
                "sluice-transformer-chaos",
            ]),
            env: vec![],
            progress: Some("sluice_consumed_total"),
        },
        ServiceSpec {
            name: "sheets-sink",
            binary: "sheets-sink",
            args: vec![
                "--service-account".into(),
                key,
                "--sheets-base-url".into(),
                sandbox.to_owned(),
                "--requests-per-second".into(),
                "100".into(),
                "--burst".into(),
                "20".into(),
                "--breaker-open-secs".into(),
                "5".into(),
                "--max-retries".into(),
                "30".into(),
            ],
            env: vec![],
            progress: Some("sluice_consumed_total"),
        },
        ServiceSpec {
            name: "erp-sink",
            binary: "erp-sink",
            args: vec![
                "--odoo-url".into(),
                sandbox.to_owned(),
                "--odoo-database".into(),
                "sluice".into(),
                "--odoo-login".into(),
                "sluice".into(),
                "--odoo-password".into(),
                "sandbox".into(),
                "--requests-per-second".into(),
                "400".into(),
                "--burst".into(),
                "50".into(),
                "--breaker-open-secs".into(),
                "5".into(),
                "--retry-initial-ms".into(),
                "200".into(),
                "--max-retries".into(),
                "30".into(),
            ],
            env: vec![],
            progress: Some("sluice_consumed_total"),
        },
        ServiceSpec {
            name: "ingest",
            binary: "ingest",
            args: vec![],
            env: vec![
                ("SLUICE_INGEST_TOKEN_SHA256".into(), token_sha.to_owned()),
                (
                    "SLUICE_INGEST_LISTEN".into(),
                    format!("127.0.0.1:{ingest_port}"),
                ),
            ],
            progress: None,
        },
    ]
}

/// The sandbox as its own process, with the key its token endpoint trusts.
async fn start_sandbox(
    bin_dir: &std::path::Path,
    work: &std::path::Path,
) -> Result<(tokio::process::Child, String)> {
    let port = sluice_testkit::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let key = work.join("service-account.json");
    let status = tokio::process::Command::new(bin_dir.join("sandbox"))
        .args(["keygen", "--out"])
        .arg(&key)
        .args(["--token-uri", &format!("{url}/token")])
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .context("sandbox keygen")?;
    if !status.success() {
        bail!("sandbox keygen failed: {status}");
    }
    let log = std::fs::File::create(work.join("logs/sandbox.log")).context("the sandbox's log")?;
    let child = tokio::process::Command::new(bin_dir.join("sandbox"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--service-account",
        ])
        .arg(&key)
        .args(["--spreadsheet", "sluice-demo=Orders,Requests"])
        .env("SLUICE_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting the sandbox")?;
    fleet::note_pid(&work.join("logs"), &child)?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{url}/admin/faults/odoo"))
        .send()
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("the sandbox did not answer in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((child, url))
}

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
    std::fs::create_dir_all(args.work_dir.join("logs")).context("creating the work folder")?;
    let root = std::env::current_dir().context("the repository root")?;

    let (mut sandbox_process, sandbox_url) = start_sandbox(&args.bin_dir, &args.work_dir).await?;
    let sandbox = Sandbox {
        url: sandbox_url.clone(),
        odoo_baseline: json!({"reject_value": load::REFUSED_CUSTOMER}),
    };
    sandbox.set("odoo", &sandbox.odoo_baseline).await?;

    let token = uuid::Uuid::new_v4().to_string();
    let token_sha = sha256_hex(&token);
    let ingest_port = sluice_testkit::free_port();
    let stack_env = vec![
        (
            "SLUICE_KAFKA_BOOTSTRAP".to_owned(),
            args.kafka_bootstrap.clone(),
        ),
        (
            "SLUICE_SCHEMA_REGISTRY_URL".to_owned(),
            args.schema_registry_url.clone(),
        ),
        ("SLUICE_DATABASE_URL".to_owned(), args.database_url.clone()),
    ];
    let fleet = Arc::new(
        Fleet::start(
            specs(&args.work_dir, &sandbox_url, ingest_port, &token_sha),
            &args.bin_dir,
            &args.work_dir.join("logs"),
            stack_env,
        )
        .await?,
    );
    // Ctrl-C or SIGTERM: the fleet and the sandbox go with the harness.
    {
        let fleet = Arc::clone(&fleet);
        let sandbox_pid = sandbox_process.id();
        tokio::spawn(async move {
            interrupted().await;
            eprintln!("[chaos] interrupted; stopping the fleet");
            fleet.stop().await;
            if let Some(pid) = sandbox_pid {
                let _ = tokio::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
            std::process::exit(130);
        });
    }
    let relay = fleet.service("outbox-relay")?.http.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet::scrape_sum(&relay, "sluice_outbox_streaming").await != Some(1.0) {
        if Instant::now() > deadline {
            bail!("outbox-relay did not start streaming in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&args.database_url)
        .await
        .context("connecting to Postgres")?;
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &args.kafka_bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .context("creating the poison producer")?;

    let window = Duration::from_secs_f64(plan.events() as f64 / args.rate);
    let schedule = faults::schedule(seed, window, &KILLED, args.kills_per_service);
    eprintln!(
        "[chaos] run {}: {} events at {:.0}/s (~{:.0} s), {} faults, seed {seed}",
        plan.run,
        plan.events(),
        args.rate,
        window.as_secs_f64(),
        schedule.len()
    );

    let supervisor = {
        let fleet = Arc::clone(&fleet);
        tokio::spawn(async move { fleet.supervise().await })
    };
    let max_lag = Arc::new(Mutex::new(BTreeMap::<&'static str, f64>::new()));
    let sampler = {
        let fleet = Arc::clone(&fleet);
        let max_lag = Arc::clone(&max_lag);
        tokio::spawn(async move {
            loop {
                for service in &fleet.services {
                    let metric = if service.spec.binary == "outbox-relay" {
                        "sluice_outbox_slot_lag_bytes"
                    } else {
                        "sluice_consumer_lag"
                    };
                    if service.spec.name == "ingest" {
                        continue;
                    }
                    if let Some(lag) = fleet::scrape_sum(&service.http, metric).await {
                        let mut max = max_lag.lock().await;
                        let entry = max.entry(service.spec.name).or_default();
                        *entry = entry.max(lag);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let started = Instant::now();
    let faults_done = {
        let fleet = Arc::clone(&fleet);
        let sandbox = Sandbox {
            url: sandbox_url.clone(),
            odoo_baseline: sandbox.odoo_baseline.clone(),
        };
        let root = root.clone();
        tokio::spawn(async move { run_faults(schedule, fleet, sandbox, root, started).await })
    };
    let ledger = Ledger::default();
    let driver = Driver {
        plan: &plan,
        pool: &pool,
        ingest: &format!("http://127.0.0.1:{ingest_port}"),
        token: &token,
        rate: args.rate,
        ledger: &ledger,
    };
    let (driven, poison) = tokio::join!(
        driver.run(),
        load::poison(&producer, &pool, &plan.run, args.poison, window)
    );
    driven.context("driving the stream")?;
    let poison = poison.context("sending poison")?;
    let load_secs = started.elapsed().as_secs_f64();
    let outcome = faults_done.await.context("the fault runner panicked")??;
    sandbox.set("sheets", &json!({})).await?;
    sandbox.set("odoo", &sandbox.odoo_baseline).await?;
    eprintln!("[chaos] load done in {load_secs:.0} s; waiting for every effect");

    let settle_started = Instant::now();
    let settle_deadline = settle_started + Duration::from_secs(args.settle_secs);
    let snapshot = loop {
        let snapshot = Snapshot::take(&plan, &sandbox_url, &pool).await?;
        if snapshot.settled(&plan) || Instant::now() > settle_deadline {
            break snapshot;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    let settle_secs = settle_started.elapsed().as_secs_f64();
    // Anything applied twice would show by now; read once more to be sure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let snapshot = if snapshot.settled(&plan) {
        Snapshot::take(&plan, &sandbox_url, &pool).await?
    } else {
        snapshot
    };
    supervisor.abort();
    sampler.abort();
    let exits = fleet.exits().await;

    eprintln!("[chaos] reading the topics back");
    let accepted = ledger.accepted();
    let bootstrap = args.kafka_bootstrap.clone();
    let (kafka, dead_letters) = tokio::task::spawn_blocking({
        let accepted = accepted.clone();
        move || -> Result<_> {
            Ok((
                reconcile::events_on_kafka(&bootstrap, &accepted)?,
                reconcile::dead_letters(&bootstrap)?,
            ))
        }
    })
    .await
    .context("the reader panicked")??;
    let refused = (0..plan.orders).filter(|&i| plan.refused(i)).count();
    let expected_dead_letters = reconcile::expected_dead_letters(poison, refused);
    let max_lag = max_lag.lock().await.clone();
    let run = report::Run {
        plan: &plan,
        code_version: &args.code_version,
        seed,
        rate: args.rate,
        accepted: &accepted,
        source_retries: ledger.retries(),
        poison,
        kafka: &kafka,
        snapshot: &snapshot,
        dead_letters: &dead_letters,
        expected_dead_letters: &expected_dead_letters,
        recoveries: &outcome.recoveries,
        restarts: &outcome.restarts,
        storms: &outcome.storms,
        max_lag: &max_lag,
        exits: &exits,
        load_secs,
        settle_secs,
    };
    let text = run.render();
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).context("creating the report's folder")?;
    }
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    println!("{text}\nwritten to {}", args.out.display());

    fleet.stop().await;
    let _ = sandbox_process.kill().await;
    if !run.passed() {
        if !kafka.lost.is_empty() {
            eprintln!(
                "[chaos] lost on Kafka, a few: {:?}",
                &kafka.lost[..kafka.lost.len().min(5)]
            );
        }
        let unsettled: Vec<_> = snapshot.unsettled.iter().take(5).collect();
        eprintln!("[chaos] unsettled aggregates, a few: {unsettled:?}");
        bail!("the chaos run failed: see {}", args.out.display());
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// What the faults cost.
struct Outcome {
    recoveries: Vec<fleet::Recovery>,
    restarts: Vec<(&'static str, Duration)>,
    storms: Vec<(&'static str, &'static str, f64)>,
}

async fn run_faults(
    schedule: Vec<faults::Scheduled>,
    fleet: Arc<Fleet>,
    sandbox: Sandbox,
    root: PathBuf,
    started: Instant,
) -> Result<Outcome> {
    let sandbox = Arc::new(sandbox);
    let mut kills = Vec::new();
    let mut others = Vec::new();
    let mut storms = Vec::new();
    for scheduled in schedule {
        tokio::time::sleep_until((started + scheduled.at).into()).await;
        let at = started.elapsed().as_secs_f64();
        match scheduled.fault {
            Fault::Kill { service, down } => {
                eprintln!("[chaos] {at:>5.0} s  SIGKILL {service} (down {down:?})");
                let fleet = Arc::clone(&fleet);
                kills.push(tokio::spawn(async move {
                    let service = fleet.service(service)?;
                    fleet.kill(service, down, started).await
                }));
            }
            Fault::RestartBroker | Fault::RestartPostgres => {
                let (name, script) = if matches!(scheduled.fault, Fault::RestartBroker) {
                    ("Kafka broker", "kafka.sh")
                } else {
                    ("Postgres", "postgres.sh")
                };
                eprintln!("[chaos] {at:>5.0} s  restarting {name}");
                let root = root.clone();
                others.push(tokio::spawn(async move {
                    faults::restart_server(&root, script)
                        .await
                        .map(|away| Some((name, away)))
                }));
            }
            Fault::Storm {
                api,
                what,
                faults,
                lasts,
            } => {
                eprintln!("[chaos] {at:>5.0} s  sandbox {api}: {what}");
                storms.push((api, what, at));
                let sandbox = Arc::clone(&sandbox);
                others.push(tokio::spawn(async move {
                    sandbox.storm(api, &faults, lasts).await.map(|()| None)
                }));
            }
        }
    }
    let mut recoveries = Vec::new();
    for kill in kills {
        recoveries.push(kill.await.context("a kill task panicked")??);
    }
    let mut restarts = Vec::new();
    for other in others {
        if let Some(restart) = other.await.context("a fault task panicked")?? {
            restarts.push(restart);
        }
    }
    Ok(Outcome {
        recoveries,
        restarts,
        storms,
    })
}

/// SHA-256 of the token, hex, as ingest's --token-sha256 takes it.
fn sha256_hex(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}
