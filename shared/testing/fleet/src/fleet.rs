//! The fleet as processes: each service started from its built binary with
//! the stack's addresses and a /metrics port of its own, SIGKILLed and
//! restarted on a fault schedule, and restarted by the supervisor when it
//! exits by itself (as Kubernetes would).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::container::InImage;
use crate::process::{Launch, note_pid, wait_metric, wait_ready};

/// How one service is started.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Name in logs and the report (two relays share a binary).
    pub name: &'static str,
    /// Which of the service's replicas (0 for the first).
    pub replica: u32,
    /// The workspace binary.
    pub binary: String,
    /// Its flags.
    pub args: Vec<String>,
    /// Its own environment, on top of the stack's.
    pub env: Vec<(String, String)>,
    /// Its environment is `env` alone (a pod's), not the stack's and the
    /// harness's as well.
    pub clear_env: bool,
    /// Run in a container of an image, not from the workspace's binary.
    pub in_image: Option<InImage>,
    /// The probes its deployment gives it (the kubelet's), on its health port.
    pub probes: Vec<HttpProbe>,
    /// A counter of its /metrics that moves when it does work; recovery
    /// after a kill is counted until it moves (None: until ready).
    pub progress: Option<&'static str>,
}

/// An HTTP probe of a deployment, asked on the service's health port.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    /// startup, liveness or readiness.
    pub kind: String,
    /// The path it asks.
    pub path: String,
}

/// One service of the fleet and the process that runs it now.
pub struct Service {
    /// How it is started.
    pub spec: ServiceSpec,
    /// Its /metrics, /healthz and /readyz, on the same port every start.
    pub http: String,
    process: Mutex<Child>,
    exits: Mutex<Vec<String>>,
}

impl Service {
    /// Its process's id now (None once it has ended).
    pub async fn pid(&self) -> Option<u32> {
        self.process.lock().await.id()
    }
}

/// What one SIGKILL cost.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The service killed.
    pub service: &'static str,
    /// Seconds into the run.
    pub at_secs: f64,
    /// From the kill until the new process answered /readyz.
    pub ready_secs: f64,
    /// From the kill until its progress counter moved (None: it had no
    /// work before the deadline, or has no counter).
    pub working_secs: Option<f64>,
}

/// Where a fleet's processes come from and where their traces go.
#[derive(Debug, Clone)]
pub struct Place {
    /// The built binaries.
    pub bin_dir: PathBuf,
    /// One log file per service.
    pub logs: PathBuf,
    /// Every pid started, for the scripts to stop a fleet whose harness is gone.
    pub pids: PathBuf,
    /// The stack's addresses, given to every service.
    pub stack_env: Vec<(String, String)>,
    /// Whether the processes go when the harness does (false: the demo's
    /// fleet keeps running for its URLs until `make demo-down`).
    pub kill_on_drop: bool,
}

/// Every service of the fleet.
pub struct Fleet {
    /// In start order.
    pub services: Vec<Arc<Service>>,
    place: Place,
}

impl Fleet {
    /// Starts each service in order, waiting for each to be ready.
    pub async fn start(specs: Vec<ServiceSpec>, place: Place) -> Result<Fleet> {
        let mut fleet = Fleet {
            services: Vec::new(),
            place,
        };
        for spec in specs {
            let port = sluice_testkit::free_port();
            let http = format!("http://127.0.0.1:{port}");
            let child = fleet.spawn(&spec, port)?;
            let service = Arc::new(Service {
                spec,
                http,
                process: Mutex::new(child),
                exits: Mutex::new(Vec::new()),
            });
            wait_ready(&service.http, Duration::from_secs(120))
                .await
                .with_context(|| format!("{} did not become ready", service.spec.name))?;
            eprintln!("[fleet] {} ready at {}", service.spec.name, service.http);
            fleet.services.push(service);
        }
        Ok(fleet)
    }

    /// The first replica of the service called `name`.
    pub fn service(&self, name: &str) -> Result<&Arc<Service>> {
        self.services
            .iter()
            .find(|service| service.spec.name == name)
            .with_context(|| format!("no service {name} in the fleet"))
    }

    /// Every replica of the service called `name`.
    pub fn replicas<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Arc<Service>> {
        self.services.iter().filter(move |s| s.spec.name == name)
    }

    /// Waits until one replica of the business outbox's relay holds the
    /// slot and streams (the others stand by): rows committed from then on
    /// are relayed.
    pub async fn until_streaming(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let mut streaming = 0.0;
            for relay in self.replicas("outbox-relay") {
                streaming += crate::scrape_sum(&relay.http, "sluice_outbox_streaming")
                    .await
                    .unwrap_or(0.0);
            }
            if streaming == 1.0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "no outbox-relay streams after {} s ({streaming} do)",
                    within.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn spawn(&self, spec: &ServiceSpec, port: u16) -> Result<Child> {
        let mut env = Vec::new();
        if !spec.clear_env {
            env.extend(self.place.stack_env.iter().cloned());
            // The operator's filter, as the demo has always honoured it.
            let filter = std::env::var("SLUICE_LOG").unwrap_or_else(|_| "info,rdkafka=warn".into());
            env.push(("SLUICE_LOG".into(), filter));
            // Log files, not terminals: no colour codes.
            env.push(("NO_COLOR".into(), "1".into()));
        }
        env.extend(spec.env.iter().cloned());
        // Every process on one host: each replica's health port its own.
        env.push(("SLUICE_HTTP_LISTEN".into(), format!("127.0.0.1:{port}")));
        let launch = Launch {
            binary: self.place.bin_dir.join(&spec.binary),
            label: label(spec),
            args: spec.args.clone(),
            env,
            clear_env: spec.clear_env,
            logs: self.place.logs.clone(),
            in_image: spec.in_image.clone(),
        };
        let child = Command::from(launch.command()?)
            .kill_on_drop(self.place.kill_on_drop)
            .spawn()
            .with_context(|| format!("starting {}", launch.binary.display()))?;
        note_pid(&self.place.pids, child.id())?;
        Ok(child)
    }

    /// Where each service's log is.
    pub fn logs(&self) -> &Path {
        &self.place.logs
    }

    fn port_of(service: &Service) -> Result<u16> {
        service
            .http
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .context("a service URL without a port")
    }

    /// SIGKILLs `service`, starts it again after `down`, and measures how
    /// long it took to be ready and to work again.
    pub async fn kill(
        &self,
        service: &Service,
        down: Duration,
        started: Instant,
    ) -> Result<Recovery> {
        let at = Instant::now();
        {
            let mut process = service.process.lock().await;
            sigkill(&service.spec, &mut process).await?;
            process.wait().await.context("reaping the killed process")?;
            tokio::time::sleep(down).await;
            *process = self.spawn(&service.spec, Self::port_of(service)?)?;
        }
        wait_ready(&service.http, Duration::from_secs(180))
            .await
            .with_context(|| format!("{} did not come back", service.spec.name))?;
        let ready_secs = at.elapsed().as_secs_f64();
        let working_secs = match service.spec.progress {
            // The new process counts from zero: any work is its own.
            Some(counter) => wait_metric(&service.http, counter, Duration::from_secs(60))
                .await
                .then(|| at.elapsed().as_secs_f64()),
            None => None,
        };
        Ok(Recovery {
            service: service.spec.name,
            at_secs: at.duration_since(started).as_secs_f64(),
            ready_secs,
            working_secs,
        })
    }

    /// Restarts every service that exited on its own, noting why; runs until
    /// the task is dropped.
    pub async fn supervise(&self) -> Result<()> {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for service in &self.services {
                let Ok(mut process) = service.process.try_lock() else {
                    continue; // being killed on purpose
                };
                if let Some(status) = process.try_wait().context("polling a child")? {
                    eprintln!(
                        "[fleet] {} exited by itself ({status}); restarting it",
                        service.spec.name
                    );
                    service.exits.lock().await.push(status.to_string());
                    *process = self.spawn(&service.spec, Self::port_of(service)?)?;
                }
            }
        }
    }

    /// Services that exited without being killed, with how each exit ended.
    pub async fn exits(&self) -> Vec<(&'static str, Vec<String>)> {
        let mut all = Vec::new();
        for service in &self.services {
            let exits = service.exits.lock().await.clone();
            if !exits.is_empty() {
                all.push((service.spec.name, exits));
            }
        }
        all
    }

    /// SIGTERMs every process (in reverse start order) and waits for it.
    pub async fn stop(&self) {
        for service in self.services.iter().rev() {
            Self::halt(service).await;
        }
    }

    /// SIGTERMs `service`'s process and waits for it (SIGKILL after 20 s);
    /// nothing restarts it unless [`Self::supervise`] runs.
    pub async fn halt(service: &Service) {
        let mut process = service.process.lock().await;
        if let Some(pid) = process.id() {
            // SIGTERM through kill(1): the fleet stops as it would in production.
            let _ = Command::new("kill").arg(pid.to_string()).status().await;
        }
        if tokio::time::timeout(Duration::from_secs(20), process.wait())
            .await
            .is_err()
        {
            let _ = sigkill(&service.spec, &mut process).await;
            let _ = process.wait().await;
        }
    }
}

/// What names `spec`'s process: its log, its container.
pub(crate) fn label(spec: &ServiceSpec) -> String {
    match spec.replica {
        0 => spec.name.to_owned(),
        replica => format!("{}-{replica}", spec.name),
    }
}

/// SIGKILLs `spec`'s process, in its container if it runs in one (a
/// container that already ended is not an error: its `podman run` is
/// killed all the same).
async fn sigkill(spec: &ServiceSpec, process: &mut Child) -> Result<()> {
    if spec.in_image.is_some()
        && let Err(err) = crate::container::kill(&label(spec)).await
    {
        eprintln!("[fleet] {}: {err:#}", spec.name);
    }
    process.start_kill().context("SIGKILL")
}
