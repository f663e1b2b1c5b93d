//! How one fleet process is started, and how it is watched from outside:
//! its /readyz and its /metrics. The demo, the chaos run and the saga tests
//! all start their processes through [`Launch`], so each gets the same
//! environment, log file and port handling.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::container::InImage;

/// A built binary of the workspace, started with its flags, its own
/// environment on top of the stack's, and stdout and stderr appended to
/// `<logs>/<label>.log`.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The executable.
    pub binary: PathBuf,
    /// Names its log file (two relays share a binary).
    pub label: String,
    /// Its flags.
    pub args: Vec<String>,
    /// Its environment, in order (a later entry wins).
    pub env: Vec<(String, String)>,
    /// Start from an empty environment (but `PATH`): the process sees only
    /// what the launch gives it, as a pod would.
    pub clear_env: bool,
    /// Where the log goes.
    pub logs: PathBuf,
    /// Run `binary`'s name in a container of this image instead (its
    /// environment is then `env` alone, whatever `clear_env` says).
    pub in_image: Option<InImage>,
}

impl Launch {
    /// The `std` command, ready to spawn (tokio's `Command::from` takes it).
    pub fn command(&self) -> Result<Command> {
        let mut command = match &self.in_image {
            Some(in_image) => {
                let binary = self
                    .binary
                    .file_name()
                    .with_context(|| format!("{}: not a binary's path", self.binary.display()))?;
                in_image.command(
                    &self.label,
                    &binary.to_string_lossy(),
                    &self.args,
                    &self.env,
                )
            }
            None => self.local()?,
        };
        std::fs::create_dir_all(&self.logs)
            .with_context(|| format!("creating {}", self.logs.display()))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("opening {}", self.log_path().display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning the log handle")?)
            .stderr(log);
        Ok(command)
    }

    /// The workspace's binary, with the launch's environment.
    fn local(&self) -> Result<Command> {
        if !self.binary.exists() {
            bail!(
                "{} is not built: build it (the chaos run uses --release), or name the folder that has it",
                self.binary.display()
            );
        }
        let mut command = Command::new(&self.binary);
        command.args(&self.args);
        if self.clear_env {
            command
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default());
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(command)
    }

    /// `<logs>/<label>.log`.
    pub fn log_path(&self) -> PathBuf {
        self.logs.join(format!("{}.log", self.label))
    }
}

/// A command run to completion once the fleet is up (a deployment's
/// documented operator commands).
#[derive(Debug, Clone)]
pub struct AfterStart {
    /// Names it in errors and logs.
    pub what: String,
    /// How it is started.
    pub launch: Launch,
}

/// Runs `launch` until it exits (within 300 s); anything but success is
/// an error naming `what` and its log.
pub async fn run_to_completion(what: &str, launch: &Launch, pids: &Path) -> Result<()> {
    let mut child = tokio::process::Command::from(launch.command()?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    note_pid(pids, child.id())?;
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .with_context(|| format!("{what} did not finish in 300 s"))?
        .with_context(|| format!("waiting for {what}"))?;
    if !status.success() {
        bail!(
            "{what} failed ({status}); see {}",
            launch.log_path().display()
        );
    }
    Ok(())
}

/// Appends `pid` to `pids`, which the scripts read to stop a fleet whose
/// harness is gone (`make demo-down`, or a chaos run that was SIGKILLed).
pub fn note_pid(pids: &Path, pid: Option<u32>) -> Result<()> {
    use std::io::Write as _;
    let Some(pid) = pid else {
        return Ok(());
    };
    let mut file = File::options()
        .create(true)
        .append(true)
        .open(pids)
        .with_context(|| format!("opening {}", pids.display()))?;
    writeln!(file, "{pid}").context("noting a pid")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// Polls `url` until it answers 2xx.
pub async fn wait_answering(url: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    let client = client();
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer 200 within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `base`/readyz until it answers 200.
pub async fn wait_ready(base: &str, within: Duration) -> Result<()> {
    wait_answering(&format!("{base}/readyz"), within).await
}

/// `base`/metrics, as text.
pub async fn scrape(base: &str) -> Option<String> {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The sum of every series of metric `name` on `base`/metrics.
pub async fn scrape_sum(base: &str, name: &str) -> Option<f64> {
    Some(sum_of(&scrape(base).await?, name))
}

/// Polls until metric `name` on `base` sums to more than zero.
pub async fn wait_metric(base: &str, name: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if scrape_sum(base, name).await.unwrap_or(0.0) > 0.0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
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
