//! One run of the fleet on the local stack: the sandbox and every service of
//! the topology started, the stream driven through the outbox and ingest
//! while the scenario's faults strike, then every accepted event reconciled
//! against Kafka, the sandbox, the saga table and the dead letters. The demo
//! and the chaos run are two scenarios of this.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::chart::ChartRun;
use crate::cluster::Cluster;
use crate::compose::ComposeRun;
use crate::faults::{Broker, Fault, Scheduled, stack_script};
use crate::fleet::{Fleet, Place, Recovery};
use crate::load::{Driver, Ledger, Plan};
use crate::process::run_to_completion;
use crate::reconcile::Snapshot;
use crate::report::Report;
use crate::sandbox::Sandbox;
use crate::topology::{self, Tuning, Wiring};

/// What a run does.
pub struct Scenario {
    /// Names the report ("Chaos run", "Demo").
    pub title: &'static str,
    /// What to send.
    pub plan: Plan,
    /// Events per second offered, both sources together.
    pub rate: f64,
    /// What goes wrong, and when, from the start of the load.
    pub faults: Vec<Scheduled>,
    /// The seed the fault schedule was drawn from (for the report).
    pub seed: u64,
    /// Non-Avro values per event topic, and unfit outbox rows.
    pub poison: usize,
    /// Odoo's faults outside storms.
    pub odoo_baseline: Value,
    /// Sheets' faults outside storms.
    pub sheets_baseline: Value,
    /// What runs: the shipped topology with the run's flags, or a chart.
    pub topology: Topology,
    /// Longest wait, after the load, for every effect to be in place.
    pub settle: Duration,
}

impl Scenario {
    /// The demo's kind of stream through a deployment's fleet (the
    /// chart-run, the compose-run): 20 orders with every 10th refused by
    /// the ERP, 2 requests of 10 events, one poison per source, no faults.
    /// `prefix` starts the run's ids.
    pub fn deployment(title: &'static str, prefix: char, topology: Topology) -> Scenario {
        Scenario {
            title,
            plan: Plan {
                run: format!("{prefix}{}", chrono::Utc::now().format("%H%M%S")),
                requests: 2,
                orders: 20,
                refuse_every: 10,
            },
            rate: 20.0,
            faults: vec![],
            seed: 0,
            poison: 1,
            odoo_baseline: serde_json::json!({"reject_value": crate::load::REFUSED_CUSTOMER}),
            sheets_baseline: serde_json::json!({}),
            topology,
            settle: Duration::from_secs(180),
        }
    }
}

/// Where a run's services come from.
pub enum Topology {
    /// The shipped topology ([`topology::services`]), with flags the run
    /// adds to its services.
    Shipped(Tuning),
    /// A chart's rendered objects (the chart-run).
    Chart(ChartRun),
    /// A compose file's services in containers of the image (the compose-run).
    Compose(ComposeRun),
}

/// Where the run happens.
pub struct Harness {
    /// Binaries, logs, pids, the stack's addresses.
    pub place: Place,
    /// Keys and the like.
    pub work_dir: PathBuf,
    /// The repository (the stack's scripts restart servers).
    pub root: PathBuf,
    /// The business database (outbox, sagas).
    pub database_url: String,
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: String,
    /// The code under test, named in the report.
    pub code_version: String,
}

/// A run that has ended: its report, and the fleet, still running.
pub struct Finished {
    /// The report, Markdown.
    pub report: String,
    /// Nothing lost, nothing applied twice, every dead letter expected.
    pub passed: bool,
    /// Why not, in a few lines (empty when it passed).
    pub diagnosis: Vec<String>,
    /// The fleet.
    pub fleet: Arc<Fleet>,
    /// The sandbox.
    pub sandbox: Sandbox,
    /// ingest's API.
    pub ingest: String,
    /// ingest's bearer token.
    pub token: String,
    /// When the load started, for reading what this run dead-lettered.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

impl Finished {
    /// Stops the fleet and the sandbox.
    pub async fn stop(self) {
        self.fleet.stop().await;
        self.sandbox.stop().await;
    }
}

impl Harness {
    /// Runs `scenario`, leaving the fleet running for the caller to look at
    /// or stop.
    pub async fn run(&self, scenario: Scenario) -> Result<Finished> {
        let plan = &scenario.plan;
        let started_at = chrono::Utc::now();
        std::fs::create_dir_all(&self.work_dir).context("creating the work folder")?;
        let service_account = self.work_dir.join("service-account.json");
        let sandbox = Sandbox::start(
            &self.place,
            &service_account,
            "sluice-demo=Orders,Requests",
            scenario.odoo_baseline.clone(),
            scenario.sheets_baseline.clone(),
        )
        .await?;
        let token = uuid::Uuid::new_v4().to_string();
        let ingest_port = sluice_testkit::free_port();
        let ingest = format!("http://127.0.0.1:{ingest_port}");
        let wiring = Wiring {
            sandbox: &sandbox.url,
            service_account: &service_account,
            ingest_port,
            token_sha256: &sluice_testkit::token_sha256(&token),
        };
        let (services, after_start) = match &scenario.topology {
            Topology::Shipped(tuning) => (topology::services(&wiring, tuning), vec![]),
            Topology::Chart(chart) => chart.services(&wiring, &self.place, &self.work_dir).await?,
            Topology::Compose(compose) => (
                compose
                    .services(&wiring, &self.place, &self.work_dir)
                    .await?,
                vec![],
            ),
        };
        let fleet = Arc::new(Fleet::start(services, self.place.clone()).await?);
        stop_on_signal(Arc::clone(&fleet), sandbox.pid());
        fleet.until_streaming(Duration::from_secs(60)).await?;
        for run in &after_start {
            run_to_completion(&run.what, &run.launch, &self.place.pids).await?;
            eprintln!("[fleet] {}: exit 0", run.what);
        }

        // Idle: every service ready and nothing sent yet.
        let idle = crate::cost::sample(&fleet).await;

        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.database_url)
            .await
            .context("connecting to Postgres")?;
        let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.kafka_bootstrap)
            .set("enable.idempotence", "true")
            .create()
            .context("creating the poison producer")?;
        let window = Duration::from_secs_f64(plan.events() as f64 / scenario.rate);
        eprintln!(
            "[fleet] run {}: {} events at {:.0}/s (~{:.0} s), {} faults",
            plan.run,
            plan.events(),
            scenario.rate,
            window.as_secs_f64(),
            scenario.faults.len()
        );

        let supervisor = {
            let fleet = Arc::clone(&fleet);
            tokio::spawn(async move { fleet.supervise().await })
        };
        let max_lag = Arc::new(Mutex::new(BTreeMap::<&'static str, f64>::new()));
        let series = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let sampler = tokio::spawn(sample_lag(
            Arc::clone(&fleet),
            started,
            Arc::clone(&max_lag),
            Arc::clone(&series),
        ));
        let sandbox = Arc::new(sandbox);
        let faults_done = tokio::spawn(run_faults(
            scenario.faults.clone(),
            Arc::clone(&fleet),
            Arc::clone(&sandbox),
            Servers {
                root: self.root.clone(),
                kafka_bootstrap: self.kafka_bootstrap.clone(),
            },
            started,
        ));
        let ledger = Ledger::default();
        let driver = Driver {
            plan,
            pool: &pool,
            ingest: &ingest,
            token: &token,
            rate: scenario.rate,
            ledger: &ledger,
        };
        let (driven, poison) = tokio::join!(
            driver.run(),
            crate::load::poison(&producer, &pool, &plan.run, scenario.poison, window)
        );
        driven.context("driving the stream")?;
        let poison = poison.context("sending poison")?;
        let load_secs = started.elapsed().as_secs_f64();
        let outcome = faults_done.await.context("the fault runner panicked")??;
        let sandbox = Arc::try_unwrap(sandbox)
            .map_err(|_| anyhow::anyhow!("the sandbox is still shared after the faults"))?;
        sandbox.set("sheets", &sandbox.baseline("sheets")).await?;
        sandbox.set("odoo", &sandbox.baseline("odoo")).await?;
        eprintln!("[fleet] load done in {load_secs:.0} s; waiting for every effect");

        let settle_started = Instant::now();
        let snapshot = loop {
            let snapshot = Snapshot::take(plan, &sandbox.url, &pool).await?;
            if snapshot.settled(plan) || settle_started.elapsed() > scenario.settle {
                break snapshot;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        };
        let settle_secs = settle_started.elapsed().as_secs_f64();
        // Anything applied twice would show by now; read once more to be sure.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let snapshot = if snapshot.settled(plan) {
            Snapshot::take(plan, &sandbox.url, &pool).await?
        } else {
            snapshot
        };
        supervisor.abort();
        sampler.abort();
        let exits = fleet.exits().await;
        let end = crate::cost::sample(&fleet).await;

        eprintln!("[fleet] reading the topics back");
        let accepted = ledger.accepted();
        let bootstrap = self.kafka_bootstrap.clone();
        let (kafka, dead_letters) = tokio::task::spawn_blocking({
            let accepted = accepted.clone();
            let run = plan.run.clone();
            move || -> Result<_> {
                Ok((
                    crate::reconcile::events_on_kafka(&bootstrap, &accepted)?,
                    crate::reconcile::dead_letters(&bootstrap, &run)?,
                ))
            }
        })
        .await
        .context("the reader panicked")??;
        let refused = (0..plan.orders).filter(|&i| plan.refused(i)).count();
        let expected_dead_letters = crate::reconcile::expected_dead_letters(poison, refused);
        let max_lag = max_lag.lock().await.clone();
        let series = series.lock().await.clone();
        let report = Report {
            title: scenario.title,
            plan,
            code_version: &self.code_version,
            seed: scenario.seed,
            rate: scenario.rate,
            accepted: &accepted,
            source_retries: ledger.retries(),
            poison,
            kafka: &kafka,
            snapshot: &snapshot,
            dead_letters: &dead_letters,
            expected_dead_letters: &expected_dead_letters,
            recoveries: &outcome.recoveries,
            disruptions: &outcome.disruptions,
            series: &series,
            storms: &outcome.storms,
            max_lag: &max_lag,
            exits: &exits,
            load_secs,
            settle_secs,
            cost: (&idle, &end),
        };
        let mut diagnosis = Vec::new();
        if !kafka.lost.is_empty() {
            diagnosis.push(format!(
                "lost on Kafka, a few: {:?}",
                &kafka.lost[..kafka.lost.len().min(5)]
            ));
        }
        if !snapshot.unsettled.is_empty() {
            let unsettled: Vec<_> = snapshot.unsettled.iter().take(5).collect();
            diagnosis.push(format!("unsettled aggregates, a few: {unsettled:?}"));
        }
        Ok(Finished {
            report: report.render(),
            passed: report.passed(),
            diagnosis,
            fleet,
            sandbox,
            ingest,
            token,
            started_at,
        })
    }
}

/// Ctrl-C or SIGTERM: the fleet and the sandbox go with the harness.
fn stop_on_signal(fleet: Arc<Fleet>, sandbox_pid: Option<u32>) {
    tokio::spawn(async move {
        interrupted().await;
        eprintln!("[fleet] interrupted; stopping the fleet");
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

/// The fleet at one moment: its consumers' lag and the work it has done.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds into the run.
    pub at_secs: f64,
    /// Consumer lag of every consuming service, messages (a service that
    /// does not answer counts with its last figure).
    pub lag: f64,
    /// Work done by every service since the start (messages consumed,
    /// events relayed), summed over restarts.
    pub work: f64,
}

/// Notes the highest consumer lag (messages) or slot lag (bytes) of each
/// service, and the fleet's lag and work as a series, once a second, until
/// aborted.
async fn sample_lag(
    fleet: Arc<Fleet>,
    started: Instant,
    max_lag: Arc<Mutex<BTreeMap<&'static str, f64>>>,
    series: Arc<Mutex<Vec<Sample>>>,
) {
    let mut lag = BTreeMap::<(&'static str, u32), f64>::new();
    let mut counted = BTreeMap::<(&'static str, u32), f64>::new();
    let mut work = 0.0;
    loop {
        for service in fleet.services.iter().filter(|s| s.spec.name != "ingest") {
            let name = service.spec.name;
            let replica = (name, service.spec.replica);
            let relay = service.spec.binary == "outbox-relay";
            let metric = if relay {
                "sluice_outbox_slot_lag_bytes"
            } else {
                "sluice_consumer_lag"
            };
            if let Some(now) = crate::scrape_sum(&service.http, metric).await {
                let mut max = max_lag.lock().await;
                let entry = max.entry(name).or_default();
                *entry = entry.max(now);
                if !relay {
                    lag.insert(replica, now);
                }
            }
            if let Some(progress) = service.spec.progress
                && let Some(now) = crate::scrape_sum(&service.http, progress).await
            {
                let before = counted.insert(replica, now).unwrap_or(0.0);
                // A restarted process counts from zero again.
                work += if now >= before { now - before } else { now };
            }
        }
        series.lock().await.push(Sample {
            at_secs: started.elapsed().as_secs_f64(),
            lag: lag.values().sum(),
            work,
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One fault of a server of the stack and how long the server took.
#[derive(Debug, Clone)]
pub struct Disruption {
    /// What struck ("SIGKILL Kafka node 2, leader of 31 of 96 partitions").
    pub what: String,
    /// Seconds into the run.
    pub at_secs: f64,
    /// From the fault until the server answered again.
    pub back_secs: f64,
    /// From the fault until every replica was in sync again (Kafka only).
    pub whole_secs: Option<f64>,
}

/// What the faults cost.
struct Outcome {
    recoveries: Vec<Recovery>,
    disruptions: Vec<Disruption>,
    storms: Vec<(&'static str, &'static str, f64)>,
}

async fn run_faults(
    schedule: Vec<Scheduled>,
    fleet: Arc<Fleet>,
    sandbox: Arc<Sandbox>,
    servers: Servers,
    started: Instant,
) -> Result<Outcome> {
    let (on_servers, schedule): (Vec<_>, Vec<_>) =
        schedule.into_iter().partition(|s| s.fault.is_server());
    let servers = tokio::spawn(servers.strike(on_servers, started));
    let mut kills = Vec::new();
    let mut others = Vec::new();
    let mut storms = Vec::new();
    for scheduled in schedule {
        tokio::time::sleep_until((started + scheduled.at).into()).await;
        let at = started.elapsed().as_secs_f64();
        match scheduled.fault {
            Fault::Kill { service, down } => {
                eprintln!("[fleet] {at:>5.0} s  SIGKILL {service} (down {down:?})");
                let fleet = Arc::clone(&fleet);
                kills.push(tokio::spawn(async move {
                    let service = fleet.service(service)?;
                    fleet.kill(service, down, started).await
                }));
            }
            Fault::Storm {
                api,
                what,
                faults,
                lasts,
            } => {
                eprintln!("[fleet] {at:>5.0} s  sandbox {api}: {what}");
                storms.push((api, what, at));
                let sandbox = Arc::clone(&sandbox);
                others.push(tokio::spawn(async move {
                    sandbox.storm(api, &faults, lasts).await
                }));
            }
            server => bail!("{server:?} is a server's fault"),
        }
    }
    let mut recoveries = Vec::new();
    for kill in kills {
        recoveries.push(kill.await.context("a kill task panicked")??);
    }
    for other in others {
        other.await.context("a storm task panicked")??;
    }
    let disruptions = servers.await.context("the server faults panicked")??;
    Ok(Outcome {
        recoveries,
        disruptions,
        storms,
    })
}

/// The stack's servers, struck through its scripts.
struct Servers {
    root: PathBuf,
    kafka_bootstrap: String,
}

impl Servers {
    /// Strikes each fault at its time, or when the one before is over if
    /// that is later: one server down at a time, and a Kafka node only
    /// once every replica is in sync again (as a rolling restart waits),
    /// so that no fault takes two of three replicas.
    async fn strike(self, faults: Vec<Scheduled>, started: Instant) -> Result<Vec<Disruption>> {
        let cluster = Cluster::connect(&self.kafka_bootstrap)?;
        let mut disruptions = Vec::new();
        for scheduled in faults {
            tokio::time::sleep_until((started + scheduled.at).into()).await;
            let at_secs = started.elapsed().as_secs_f64();
            let struck = Instant::now();
            let (what, kafka) = self.strike_one(&cluster, &scheduled.fault).await?;
            let back_secs = struck.elapsed().as_secs_f64();
            let whole_secs = if kafka {
                cluster.wait_whole(Duration::from_secs(300)).await?;
                Some(struck.elapsed().as_secs_f64())
            } else {
                None
            };
            eprintln!("[fleet] {at_secs:>5.0} s  {what}: back after {back_secs:.1} s");
            disruptions.push(Disruption {
                what,
                at_secs,
                back_secs,
                whole_secs,
            });
        }
        Ok(disruptions)
    }

    async fn script(&self, script: &str, args: &[&str]) -> Result<()> {
        stack_script(&self.root, script, args).await
    }

    /// Strikes `fault` and brings the server back; says what it did and
    /// whether it was Kafka.
    async fn strike_one(&self, cluster: &Cluster, fault: &Fault) -> Result<(String, bool)> {
        Ok(match *fault {
            Fault::RestartBroker => {
                let node = cluster.most_leaders()?.node.to_string();
                eprintln!("[fleet] restarting Kafka node {node}");
                self.script("kafka.sh", &["restart-node", &node]).await?;
                (format!("Kafka node {node} stopped and started"), true)
            }
            Fault::KillBroker { which, down } => {
                let (node, role) = match which {
                    Broker::MostLeaders => {
                        let leading = cluster.most_leaders()?;
                        let role =
                            format!("leader of {} of {} partitions", leading.leads, leading.of);
                        (leading.node, role)
                    }
                    Broker::Coordinator(id) => (
                        cluster.transaction_coordinator(id)?,
                        format!("coordinator of {id}'s transactions"),
                    ),
                };
                let node = node.to_string();
                eprintln!("[fleet] SIGKILL Kafka node {node}, {role}");
                self.script("kafka.sh", &["kill", &node]).await?;
                tokio::time::sleep(down).await;
                self.script("kafka.sh", &["start-node", &node]).await?;
                (
                    format!(
                        "SIGKILL Kafka node {node}, {role}; started again after {} s",
                        down.as_secs()
                    ),
                    true,
                )
            }
            Fault::PauseBroker { lasts } => {
                let leading = cluster.most_leaders()?;
                let node = leading.node.to_string();
                eprintln!("[fleet] SIGSTOP Kafka node {node}");
                self.script("kafka.sh", &["pause", &node]).await?;
                tokio::time::sleep(lasts).await;
                self.script("kafka.sh", &["resume", &node]).await?;
                (
                    format!(
                        "Kafka node {node} (leader of {} of {} partitions) cut off for {} s (SIGSTOP, then SIGCONT)",
                        leading.leads,
                        leading.of,
                        lasts.as_secs()
                    ),
                    true,
                )
            }
            Fault::RestartPostgres => {
                eprintln!("[fleet] restarting Postgres");
                self.script("postgres.sh", &["restart"]).await?;
                (
                    "Postgres stopped (fast shutdown) and started".to_owned(),
                    false,
                )
            }
            Fault::KillPostgres { down } => {
                eprintln!("[fleet] SIGKILL Postgres");
                self.script("postgres.sh", &["kill"]).await?;
                tokio::time::sleep(down).await;
                self.script("postgres.sh", &["start"]).await?;
                (
                    format!(
                        "SIGKILL Postgres and its backends; started again after {} s (crash recovery)",
                        down.as_secs()
                    ),
                    false,
                )
            }
            Fault::Kill { .. } | Fault::Storm { .. } => bail!("{fault:?} is not a server's fault"),
        })
    }
}

/// Where the local stack is, as `deploy/local/stack.sh` writes it to
/// `.local/stack.env`.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// Kafka bootstrap servers of the stack.
    #[arg(long, env = "SLUICE_KAFKA_BOOTSTRAP")]
    pub kafka_bootstrap: String,
    /// The registry's Confluent-compatible API.
    #[arg(long, env = "SLUICE_SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: String,
    /// The business database (outbox, sagas).
    #[arg(long, env = "SLUICE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

impl StackArgs {
    /// A harness on this stack, its binaries in `bin_dir` and its logs,
    /// pids and keys in `work_dir` (run from the repository's root).
    pub fn harness(
        &self,
        bin_dir: &Path,
        work_dir: &Path,
        kill_on_drop: bool,
        code_version: &str,
    ) -> Result<Harness> {
        Ok(Harness {
            place: Place {
                bin_dir: bin_dir.to_path_buf(),
                logs: work_dir.join("logs"),
                pids: work_dir.join("pids"),
                stack_env: vec![
                    (
                        "SLUICE_KAFKA_BOOTSTRAP".into(),
                        self.kafka_bootstrap.clone(),
                    ),
                    (
                        "SLUICE_SCHEMA_REGISTRY_URL".into(),
                        self.schema_registry_url.clone(),
                    ),
                    ("SLUICE_DATABASE_URL".into(), self.database_url.clone()),
                ],
                kill_on_drop,
            },
            work_dir: work_dir.to_path_buf(),
            root: std::env::current_dir().context("the repository root")?,
            database_url: self.database_url.clone(),
            kafka_bootstrap: self.kafka_bootstrap.clone(),
            code_version: code_version.to_owned(),
        })
    }
}
