//! A running fleet watched as an operator would: a real Prometheus
//! (sluice-testkit's) scraping every service and Debian's
//! `prometheus-postgres-exporter` on the business database each second,
//! evaluating the shipped alert rules, so that the rules and the
//! dashboards' queries are checked against what the services and Postgres
//! really export.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use sluice_testkit::Prometheus;
use tokio::process::{Child, Command};

use crate::fleet::{Fleet, Place};
use crate::process::{Launch, note_pid};

/// Prometheus and the Postgres exporter, stopped when dropped.
pub struct Watch {
    /// The server.
    pub prometheus: Prometheus,
    targets: usize,
    _exporter: Child,
}

impl Watch {
    /// Starts the exporter on `database_url`, and Prometheus scraping it and
    /// every service of `fleet` and evaluating `rules`; returns once every
    /// target was scraped three times (a rate needs two samples).
    pub async fn start(
        fleet: &Fleet,
        place: &Place,
        rules: &Path,
        database_url: &str,
    ) -> Result<Watch> {
        let exporter_port = sluice_testkit::free_port();
        let launch = Launch {
            binary: PathBuf::from("/usr/bin/prometheus-postgres-exporter"),
            label: "postgres-exporter".into(),
            args: vec![format!("--web.listen-address=127.0.0.1:{exporter_port}")],
            env: vec![("DATA_SOURCE_NAME".into(), database_url.to_owned())],
            clear_env: true,
            logs: place.logs.clone(),
            in_image: None,
        };
        let exporter = Command::from(launch.command()?)
            .kill_on_drop(true)
            .spawn()
            .context(
                "starting prometheus-postgres-exporter (deploy/local/prerequisites.sh installs it)",
            )?;
        note_pid(&place.pids, exporter.id())?;
        let services: Vec<String> = fleet
            .services
            .iter()
            .map(|s| s.http.trim_start_matches("http://").to_owned())
            .collect();
        let rules = std::fs::canonicalize(rules)
            .with_context(|| format!("the rules {}", rules.display()))?;
        let postgres = [format!("127.0.0.1:{exporter_port}")];
        let prometheus =
            Prometheus::scraping(&rules, &[("sluice", &services), ("postgres", &postgres)])
                .await
                .map_err(|err| anyhow!("starting prometheus: {err}"))?;
        let watch = Watch {
            prometheus,
            targets: services.len() + 1,
            _exporter: exporter,
        };
        watch.until_scraped().await?;
        Ok(watch)
    }

    async fn until_scraped(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = self.query("count(sum_over_time(up[1m]) >= 3)").await?;
            let count = up
                .first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<usize>().ok());
            if count == Some(self.targets) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{count:?} of {} targets scraped after 60 s", self.targets);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The series `expr` evaluates to now; an error names the query.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>> {
        self.prometheus
            .query(expr)
            .await
            .map_err(|err| anyhow!("{err}"))
    }

    /// Waits until alert `name` is pending or firing with `label` = `value`;
    /// returns its state.
    pub async fn until_active(
        &self,
        name: &str,
        (label, value): (&str, &str),
        within: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let alerts = self
                .prometheus
                .alerts()
                .await
                .map_err(|err| anyhow!("{err}"))?;
            let found = alerts.iter().find(|alert| {
                alert["labels"]["alertname"] == name && alert["labels"][label] == value
            });
            if let Some(alert) = found {
                return Ok(alert["state"].as_str().unwrap_or_default().to_owned());
            }
            if Instant::now() > deadline {
                bail!("{name}{{{label}={value:?}}} not pending nor firing after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
