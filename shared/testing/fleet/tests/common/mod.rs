//! What the fleet-level tests share: the built binaries started as
//! processes with the stack's addresses, provisioning a contracts
//! directory, an aggregate's contract added to one, events posted to
//! ingest, a sandbox sheet read back, and the business's outbox table.
// A test fails by panicking; each test binary uses its own part of this.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use sluice_fleet::Launch;
use sluice_testkit::{KillOnDrop, Stack, free_port};
use sqlx::PgPool;

/// Where `cargo build --workspace` put the binaries (beside this test's
/// own deps/ folder).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// The stack's addresses, as every service takes them.
pub fn stack_env() -> Vec<(String, String)> {
    let stack = Stack::get();
    vec![
        (
            "SLUICE_KAFKA_BOOTSTRAP".into(),
            stack.kafka_bootstrap.clone(),
        ),
        (
            "SLUICE_SCHEMA_REGISTRY_URL".into(),
            stack.schema_registry_url.clone(),
        ),
        ("SLUICE_DATABASE_URL".into(), stack.database_url.clone()),
    ]
}

/// `binary` with `args`, the stack's addresses and `env`, its log in
/// `<logs>/<label>.log`; the process and its /metrics port.
pub fn start(
    logs: &Path,
    binary: &str,
    label: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> (KillOnDrop, u16) {
    let port = free_port();
    let mut all = stack_env();
    all.push(("SLUICE_HTTP_LISTEN".into(), format!("127.0.0.1:{port}")));
    all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let launch = Launch {
        binary: bin_dir().join(binary),
        label: label.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: all,
        clear_env: true,
        logs: logs.to_path_buf(),
        in_image: None,
    };
    (KillOnDrop(launch.command().unwrap().spawn().unwrap()), port)
}

/// `sluice-provision apply` with the contracts in `dir`.
pub fn provision(dir: &Path) -> std::process::Output {
    Command::new(bin_dir().join("sluice-provision"))
        .args(["apply", "--replication-factor", "1", "--contracts-dir"])
        .arg(dir)
        .envs(stack_env())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// An event contract in Sluice's envelope, its payload a union of
/// `branches` (each a record's JSON).
pub fn envelope(namespace: &str, name: &str, branches: Vec<Value>) -> Value {
    json!({
        "type": "record", "name": name, "namespace": namespace,
        "doc": "One event in the life of an aggregate.",
        "fields": [
            {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}, "doc": "Stable id of the event."},
            {"name": "event_type", "type": "string", "doc": "Name of the payload's record."},
            {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "When it happened."},
            {"name": "aggregate_id", "type": "string", "doc": "The aggregate's id; also the Kafka key."},
            {"name": "correlation_id", "type": ["null", "string"], "default": null, "doc": "Shared by one business request."},
            {"name": "causation_id", "type": ["null", "string"], "default": null, "doc": "What caused this event."},
            {"name": "payload", "doc": "The event itself.", "type": branches}
        ]
    })
}

/// Adds topic `<aggregate>.events.v1` with `schema` to the contracts in `dir`.
pub fn add_aggregate(dir: &Path, aggregate: &str, schema: &Value) {
    let file = format!("{aggregate}/Event.avsc");
    std::fs::create_dir_all(dir.join(aggregate)).unwrap();
    std::fs::write(
        dir.join(&file),
        serde_json::to_string_pretty(schema).unwrap(),
    )
    .unwrap();
    let mut map = std::fs::read_to_string(dir.join("topics.toml")).unwrap();
    map += &format!(
        "\n[[topic]]\nname = \"{aggregate}.events.v1\"\npartitions = 3\ncleanup_policy = \"delete\"\n\
         retention_ms = 604800000\nkey = \"{aggregate} id\"\nvalue_schema = \"{file}\"\n\
         doc = \"Domain events of the {aggregate} aggregate.\"\n"
    );
    std::fs::write(dir.join("topics.toml"), map).unwrap();
}

/// Posts one event to ingest's API at `api`; the status and the body.
pub async fn post(api: &str, token: &str, event: Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{api}/v1/events"))
        .bearer_auth(token)
        .json(&event)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Sheet `sheet` of `spreadsheet` in the sandbox at `base`, header first.
pub async fn sheet(base: &str, spreadsheet: &str, sheet: &str) -> Option<Vec<Vec<String>>> {
    let url = format!("{base}/admin/spreadsheets/{spreadsheet}/{sheet}");
    let body: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    serde_json::from_value(body.get("values")?.clone()).ok()
}

/// Drops a relay's slot, publication and outbox table when the test ends,
/// failed or not: a slot left on the shared Postgres holds WAL for good.
/// Declare it before the relay, so the relay goes first.
pub struct OutboxCleanup {
    /// Statements run in order, each until it succeeds (30 s at most: the
    /// killed relay's walsender may hold the slot for a moment).
    pub statements: Vec<String>,
}

impl Drop for OutboxCleanup {
    fn drop(&mut self) {
        let statements = std::mem::take(&mut self.statements);
        let url = Stack::get().database_url.clone();
        // Its own thread and runtime: drop may run while the test's
        // runtime unwinds.
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                for statement in statements {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                    while sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                        .execute(&pool)
                        .await
                        .is_err()
                        && std::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            });
        });
        let _ = cleaned.join();
    }
}

/// The business's outbox table, named `table`, made in `pool` by the relay's
/// migration, as the demo's scripts make it before the relay starts.
pub async fn create_outbox(pool: &PgPool, table: &str) {
    let ddl = std::fs::read_to_string(
        Stack::get().path("services/fleet/outbox-relay/migrations/0001_outbox.sql"),
    )
    .unwrap()
    .replace("IF NOT EXISTS outbox", &format!("IF NOT EXISTS {table}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
        .execute(pool)
        .await
        .unwrap();
}
