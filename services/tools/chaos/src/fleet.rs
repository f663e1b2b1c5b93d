//! The fleet as processes: each service started from its built binary with
//! the stack's addresses, SIGKILLed and restarted on the chaos schedule, and
//! restarted by the supervisor when it exits by itself (as Kubernetes would).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// How one service is started.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Name in logs and the report (two relays share a binary).
    pub name: &'static str,
    /// The workspace binary.
    pub binary: &'static str,
    /// Its flags.
    pub args: Vec<String>,
    /// Its own environment, on top of the stack's.
    pub env: Vec<(String, String)>,
    /// A counter of its /metrics that moves when it does work; recovery
    /// after a kill is counted until it moves (None: until ready).
    pub progress: Option<&'static str>,
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

/// Every service of the fleet.
pub struct Fleet {
    /// In start order.
    pub services: Vec<Arc<Service>>,
    bin_dir: PathBuf,
    logs: PathBuf,
    stack_env: Vec<(String, String)>,
}

impl Fleet {
    /// Starts each service in order, waiting for each to be ready.
    pub async fn start(
        specs: Vec<ServiceSpec>,
        bin_dir: &Path,
        logs: &Path,
        stack_env: Vec<(String, String)>,
    ) -> Result<Fleet> {
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        let mut fleet = Fleet {
            services: Vec::new(),
            bin_dir: bin_dir.to_path_buf(),
            logs: logs.to_path_buf(),
            stack_env,
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
            eprintln!("[chaos] {} ready at {}", service.spec.name, service.http);
            fleet.services.push(service);
        }
        Ok(fleet)
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Result<&Arc<Service>> {
        self.services
            .iter()
            .find(|service| service.spec.name == name)
            .with_context(|| format!("no service {name} in the fleet"))
    }

    fn spawn(&self, spec: &ServiceSpec, port: u16) -> Result<Child> {
        let binary = self.bin_dir.join(spec.binary);
        if !binary.exists() {
            bail!("{} is not built (cargo build --release)", binary.display());
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{}.log", spec.name)))
            .context("opening the service's log")?;
        let child = Command::new(&binary)
            .args(&spec.args)
            .envs(self.stack_env.iter().cloned())
            .envs(spec.env.iter().cloned())
            .env("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("SLUICE_LOG", "info,rdkafka=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning the log handle")?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        note_pid(&self.logs, &child)?;
        Ok(child)
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
            process.start_kill().context("SIGKILL")?;
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
            Some(counter) => wait_progress(&service.http, counter, Duration::from_secs(60))
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
                        "[chaos] {} exited by itself ({status}); restarting it",
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
            let mut process = service.process.lock().await;
            if let Some(pid) = process.id() {
                // SIGTERM through kill(1): the fleet stops as it would in production.
                let _ = Command::new("kill").arg(pid.to_string()).status().await;
            }
            if tokio::time::timeout(Duration::from_secs(20), process.wait())
                .await
                .is_err()
            {
                let _ = process.start_kill();
                let _ = process.wait().await;
            }
        }
    }
}

/// Appends `child`'s pid to the run's pid list, which chaos.sh clears before
/// a run: a harness that was itself SIGKILLed leaves no fleet behind.
pub fn note_pid(logs: &Path, child: &Child) -> Result<()> {
    use std::io::Write as _;
    let Some(pid) = child.id() else {
        return Ok(());
    };
    let path = logs.with_file_name("pids");
    let mut file = File::options()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{pid}").context("noting a pid")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// Polls `base`/readyz until it answers 200.
pub async fn wait_ready(base: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    let client = client();
    loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{base}/readyz did not answer 200 within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_progress(base: &str, counter: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if scrape_sum(base, counter).await.unwrap_or(0.0) > 0.0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The sum of every series of metric `name` on `base`/metrics.
pub async fn scrape_sum(base: &str, name: &str) -> Option<f64> {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(sum_of(&text, name))
}

fn sum_of(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::sum_of;

    #[test]
    fn a_metric_is_summed_over_its_series_only() {
        let text = "# TYPE sluice_consumer_lag gauge\n\
                    sluice_consumer_lag{topic=\"a\",partition=\"0\"} 3\n\
                    sluice_consumer_lag{topic=\"a\",partition=\"1\"} 4\n\
                    sluice_consumer_lag_other 100\n\
                    sluice_consumed_total 7\n";
        assert_eq!(sum_of(text, "sluice_consumer_lag"), 7.0);
        assert_eq!(sum_of(text, "sluice_consumed_total"), 7.0);
        assert_eq!(sum_of(text, "missing"), 0.0);
    }
}
