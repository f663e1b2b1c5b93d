//! A sandbox on a free loopback port, and a client for its `/admin`
//! read-back and fault endpoints: what tests and benchmarks of the
//! services drive it with.

use reqwest::Client;
use serde_json::{Map, Value};

use crate::AppState;

/// A running sandbox.
#[derive(Debug, Clone)]
pub struct Local {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    http: Client,
}

/// A loopback port taken for a sandbox not built yet (its key names the
/// token endpoint, so the address comes first).
#[derive(Debug)]
pub struct Port {
    listener: tokio::net::TcpListener,
    /// The base URL it will serve, `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Port {
    /// Takes a free loopback port.
    pub async fn take() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        Ok(Self { listener, base })
    }

    /// Serves `app` on it, in the background.
    pub fn serve(self, app: AppState) -> Local {
        tokio::spawn(crate::serve(self.listener, app));
        Local::at(self.base)
    }
}

impl Local {
    /// Serves `app` on a free loopback port, in the background.
    pub async fn start(app: AppState) -> std::io::Result<Self> {
        Ok(Port::take().await?.serve(app))
    }

    /// The client for a sandbox already running at `base`.
    pub fn at(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            http: Client::new(),
        }
    }

    /// Sets the faults of `api` (`sheets`, `odoo`).
    pub async fn set_faults(&self, api: &str, faults: &Value) -> Result<(), reqwest::Error> {
        self.http
            .put(format!("{}/admin/faults/{api}", self.base))
            .json(faults)
            .send()
            .await?
            .error_for_status()
            .map(drop)
    }

    /// The log of `api`'s requests, oldest first.
    pub async fn requests(&self, api: &str) -> Result<Vec<Value>, reqwest::Error> {
        self.get(&format!("admin/requests?api={api}")).await
    }

    /// Replaces a sheet's cells, as a person editing it would (sorting,
    /// inserting or deleting rows).
    pub async fn edit_grid(
        &self,
        spreadsheet: &str,
        sheet: &str,
        values: &[Vec<Value>],
    ) -> Result<(), reqwest::Error> {
        self.http
            .put(format!(
                "{}/admin/spreadsheets/{spreadsheet}/{sheet}",
                self.base
            ))
            .json(&serde_json::json!({ "values": values }))
            .send()
            .await?
            .error_for_status()
            .map(drop)
    }

    /// The cells of a sheet, row by row.
    pub async fn grid(
        &self,
        spreadsheet: &str,
        sheet: &str,
    ) -> Result<Vec<Vec<Value>>, reqwest::Error> {
        #[derive(serde::Deserialize)]
        struct Grid {
            values: Vec<Vec<Value>>,
        }
        let grid: Grid = self
            .get(&format!("admin/spreadsheets/{spreadsheet}/{sheet}"))
            .await?;
        Ok(grid.values)
    }

    /// The ERP's records of `model`, each with its `id`.
    pub async fn records(&self, model: &str) -> Result<Vec<Map<String, Value>>, reqwest::Error> {
        self.get(&format!("admin/erp/{model}")).await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, reqwest::Error> {
        self.http
            .get(format!("{}/{path}", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }
}
