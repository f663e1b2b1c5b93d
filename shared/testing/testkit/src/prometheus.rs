//! A real Prometheus for a test: Debian's `prometheus`, on a free loopback
//! port, scraping the test's services every second and evaluating the
//! shipped alert rules as often.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{KillOnDrop, Stack, eventually, free_port, unique_name};

/// A Prometheus server, killed (and its data removed) when dropped.
#[derive(Debug)]
pub struct Prometheus {
    /// Its base URL.
    pub base: String,
    dir: PathBuf,
    process: KillOnDrop,
}

impl Prometheus {
    /// Starts Prometheus with the repository's `rules` file (relative to the
    /// root, as shipped), scraping `targets` (`host:port`), and waits until
    /// it answers.
    pub async fn start(rules: &str, targets: &[String]) -> Prometheus {
        let rules = Stack::get().path(rules);
        let dir = std::env::temp_dir().join(unique_name("prometheus"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_text(&rules, targets)).unwrap();
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
            .spawn()
            .unwrap_or_else(|err| {
                panic!("starting prometheus ({err}): deploy/local/prerequisites.sh installs it")
            });
        let prometheus = Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            dir,
            process: KillOnDrop(process),
        };
        let ready = format!("{}/-/ready", prometheus.base);
        eventually("prometheus ready", Duration::from_secs(30), || {
            let ready = &ready;
            async move {
                let answer = reqwest::get(ready).await.ok()?;
                answer.status().is_success().then_some(())
            }
        })
        .await;
        prometheus
    }

    /// The alerts pending or firing now (`/api/v1/alerts`): each with its
    /// `labels`, `annotations`, `state` and `value`.
    pub async fn alerts(&self) -> Vec<Value> {
        let body: Value = reqwest::get(format!("{}/api/v1/alerts", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
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

fn config_text(rules: &Path, targets: &[String]) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: ['{}']\n\
         scrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        targets.join(", ")
    )
}
