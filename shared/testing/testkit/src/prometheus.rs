//! A real Prometheus for a test or a harness: Debian's `prometheus`, on a
//! free loopback port, scraping its targets every second and evaluating
//! the shipped alert rules as often, its store fresh each time (samples of
//! an earlier run inside the 5 min lookback would change what an
//! expression sees).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{KillOnDrop, Stack, free_port, unique_name};

/// Why Prometheus could not be started or asked.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A Prometheus server, killed (and its data removed) when dropped.
#[derive(Debug)]
pub struct Prometheus {
    /// Its base URL.
    pub base: String,
    dir: PathBuf,
    process: KillOnDrop,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus with the repository's `rules` file (relative to the
    /// root, as shipped), scraping `targets` (`host:port`), and waits until
    /// it answers.
    pub async fn start(rules: &str, targets: &[String]) -> Prometheus {
        Self::scraping(&Stack::get().path(rules), &[("sluice", targets)])
            .await
            .unwrap_or_else(|err| {
                panic!("starting prometheus ({err}): deploy/local/prerequisites.sh installs it")
            })
    }

    /// Starts Prometheus evaluating `rules`, scraping each job's targets
    /// (`host:port`), and waits until it answers.
    pub async fn scraping(rules: &Path, jobs: &[(&str, &[String])]) -> Result<Prometheus, Error> {
        let dir = std::env::temp_dir().join(unique_name("prometheus"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("prometheus.yml");
        let jobs: Vec<Value> = jobs
            .iter()
            .map(|(name, targets)| json!({"job_name": name, "static_configs": [{"targets": targets}]}))
            .collect();
        // JSON is YAML.
        let text = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules],
            "scrape_configs": jobs,
        });
        std::fs::write(&config, serde_json::to_vec_pretty(&text)?)?;
        let port = free_port();
        let process = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let prometheus = Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            dir,
            process: KillOnDrop(process),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        };
        let ready = format!("{}/-/ready", prometheus.base);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(answer) = prometheus.http.get(&ready).send().await
                && answer.status().is_success()
            {
                return Ok(prometheus);
            }
            if Instant::now() > deadline {
                return Err(format!("{ready} did not answer in 30 s").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The alerts pending or firing now (`/api/v1/alerts`): each with its
    /// `labels`, `annotations`, `state` and `value`.
    pub async fn alerts(&self) -> Result<Vec<Value>, Error> {
        let body = self.get(&format!("{}/api/v1/alerts", self.base)).await?;
        Ok(body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The series `expr` evaluates to now (`/api/v1/query`).
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, Error> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.base),
            [("query", expr)],
        )?;
        let body = self.get(url.as_str()).await?;
        if body["status"] != "success" {
            return Err(format!("{expr}: {}", body["error"]).into());
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    async fn get(&self, url: &str) -> Result<Value, Error> {
        Ok(self.http.get(url).send().await?.json().await?)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Gone before its folder is: it writes there until it dies.
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
