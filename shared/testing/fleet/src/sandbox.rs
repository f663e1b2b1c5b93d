//! The sandbox (Google Sheets and Odoo) as a process of its own, with the
//! service account key its token endpoint trusts, and its fault settings:
//! a baseline per API that holds between storms.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::process::{Launch, note_pid, wait_answering};

/// A running sandbox.
pub struct Sandbox {
    /// Its base URL.
    pub url: String,
    /// Odoo's faults between storms (the refused customer, say).
    pub odoo_baseline: Value,
    /// Sheets' faults between storms.
    pub sheets_baseline: Value,
    process: Child,
}

impl Sandbox {
    /// Starts `<bin_dir>/sandbox` on a free port with a new key in
    /// `service_account`, holding `spreadsheets` (`ID=Sheet,Sheet`, as its
    /// `--spreadsheet` takes them), and sets the baselines.
    pub async fn start(
        place: &crate::Place,
        service_account: &Path,
        spreadsheets: &str,
        odoo_baseline: Value,
        sheets_baseline: Value,
    ) -> Result<Sandbox> {
        let port = sluice_testkit::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let binary = place.bin_dir.join("sandbox");
        let keygen = Command::new(&binary)
            .args(["keygen", "--out"])
            .arg(service_account)
            .args(["--token-uri", &format!("{url}/token")])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .context("sandbox keygen")?;
        if !keygen.success() {
            bail!("sandbox keygen failed: {keygen}");
        }
        let launch = Launch {
            binary,
            label: "sandbox".into(),
            args: vec![
                "serve".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--service-account".into(),
                service_account.display().to_string(),
                "--spreadsheet".into(),
                spreadsheets.into(),
            ],
            env: vec![("SLUICE_LOG".into(), "warn".into())],
            clear_env: false,
            logs: place.logs.clone(),
            in_image: None,
        };
        let process = Command::from(launch.command()?)
            .kill_on_drop(place.kill_on_drop)
            .spawn()
            .context("starting the sandbox")?;
        note_pid(&place.pids, process.id())?;
        wait_answering(&format!("{url}/admin/faults/odoo"), Duration::from_secs(30)).await?;
        let sandbox = Sandbox {
            url,
            odoo_baseline,
            sheets_baseline,
            process,
        };
        sandbox.set("odoo", &sandbox.baseline("odoo")).await?;
        sandbox.set("sheets", &sandbox.baseline("sheets")).await?;
        Ok(sandbox)
    }

    /// Sets `api`'s faults.
    pub async fn set(&self, api: &str, faults: &Value) -> Result<()> {
        let response = reqwest::Client::new()
            .put(format!("{}/admin/faults/{api}", self.url))
            .json(faults)
            .send()
            .await
            .with_context(|| format!("setting the sandbox's {api} faults"))?;
        if !response.status().is_success() {
            bail!("the sandbox refused {api} faults: {}", response.status());
        }
        Ok(())
    }

    /// The faults `api` has between storms.
    pub fn baseline(&self, api: &str) -> Value {
        match api {
            "odoo" => self.odoo_baseline.clone(),
            "sheets" => self.sheets_baseline.clone(),
            _ => json!({}),
        }
    }

    /// Runs a storm: its faults for `lasts`, then the baseline again (kept
    /// on top so the refused customer stays refused).
    pub async fn storm(&self, api: &str, faults: &Value, lasts: Duration) -> Result<()> {
        let mut during = self.baseline(api);
        if let (Some(during), Some(extra)) = (during.as_object_mut(), faults.as_object()) {
            during.extend(extra.clone());
        }
        self.set(api, &during).await?;
        tokio::time::sleep(lasts).await;
        self.set(api, &self.baseline(api)).await
    }

    /// The sandbox's pid, for a signal handler to stop it.
    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.process.kill().await;
    }
}
