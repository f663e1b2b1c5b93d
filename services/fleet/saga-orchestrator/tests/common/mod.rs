//! The fleet a saga needs, for real: its own Postgres database, its own
//! topics, the sandbox (Sheets and Odoo), and the built binaries of
//! outbox-relay (streaming the orchestrator's outbox), erp-sink,
//! sheets-sink and saga-orchestrator, each a process the test can SIGKILL.
// Helpers fail the test by panicking, as assertions do; each test binary
// uses its own part of this module.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{Customer, OrderEvent, OrderLine, OrderPayload, OrderPlaced};
use sluice_fleet::Launch;
use sluice_fleet::topology::sandbox_odoo;
use sluice_saga_orchestrator::ORDER_FULFILMENT;
use sluice_sandbox::{Local, OdooAccount, Port, Sandbox, ServiceAccountKey, TokenIssuer};
use sluice_testkit::{KillOnDrop, Stack, TestTopic, eventually, free_port, producer, unique_name};
use sqlx::{PgPool, Row};

/// The spreadsheet and sheet the saga records orders in.
pub const SPREADSHEET: &str = "sluice-demo";
pub const SHEET: &str = "Orders";

/// The topics of one fleet.
pub struct Topics {
    pub orders: String,
    pub erp_commands: String,
    pub erp_results: String,
    pub sheet_rows: String,
    pub sheet_results: String,
    pub dlq_saga: String,
    pub dlq_erp: String,
    pub dlq_sheets: String,
    pub dlq_relay: String,
    pub audit: String,
}

/// One isolated fleet.
pub struct Fleet {
    pub name: String,
    pub topics: Topics,
    pub sandbox: Local,
    /// The fleet's own database (sagas, outbox, slot).
    pub database_url: String,
    pub pool: PgPool,
    key_file: PathBuf,
    logs: PathBuf,
    codec: Arc<AvroCodec>,
    /// Whether its services reach Kafka, the registry and Postgres over
    /// TLS, each checked against the stack's CA.
    tls: bool,
    /// Whether the tests watch its services: a debug line per message and
    /// every span sent to the stack's Jaeger.
    observed: bool,
}

/// A built binary of the workspace (`cargo build` puts them beside this
/// package's own).
fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_saga-orchestrator")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` first",
        path.display()
    );
    path
}

impl Fleet {
    /// Topics, a database and the sandbox for a test called `name`.
    pub async fn new(name: &str) -> Fleet {
        let stack = Stack::get();
        let unique = unique_name(name).replace('-', "_");
        let admin = PgPool::connect(&stack.database_url).await.unwrap();
        sweep(&admin, name).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {unique}")))
            .execute(&admin)
            .await
            .unwrap();
        let database_url = stack
            .database_url
            .rsplit_once('/')
            .map(|(server, _)| format!("{server}/{unique}"))
            .unwrap();
        let pool = PgPool::connect(&database_url).await.unwrap();
        let topic = |contract: &'static str, kind: &'static str| async move {
            TestTopic::with_schema_of(contract, &format!("saga-{kind}"), 6)
                .await
                .name
        };
        let dlq = |service: &'static str| async move {
            TestTopic::with_schema_named(
                "dlq.saga-orchestrator.v1",
                format!("dlq.{}.v1", unique_name(service)),
                1,
            )
            .await
            .name
        };
        let topics = Topics {
            orders: topic("orders.events.v1", "orders").await,
            erp_commands: topic("erp.commands.v1", "erp-commands").await,
            erp_results: topic("erp.results.v1", "erp-results").await,
            sheet_rows: topic("sheets.rows.v1", "sheet-rows").await,
            sheet_results: topic("sheets.results.v1", "sheet-results").await,
            dlq_saga: dlq("saga").await,
            dlq_erp: dlq("erp").await,
            dlq_sheets: dlq("sheets").await,
            dlq_relay: dlq("relay").await,
            audit: topic("audit.v1", "audit").await,
        };
        let logs = std::env::temp_dir().join("sluice-saga-tests").join(&unique);
        std::fs::create_dir_all(&logs).unwrap();
        let (sandbox, key) = sandbox().await;
        let key_file = logs.join("service-account.json");
        key.write(&key_file).unwrap();
        Fleet {
            name: unique,
            topics,
            sandbox,
            database_url,
            pool,
            key_file,
            logs,
            codec: Arc::new(AvroCodec::new(stack.registry_settings())),
            tls: false,
            observed: true,
        }
    }

    /// The same, its services on the stack's TLS listeners: Kafka SSL,
    /// the registry's HTTPS and Postgres with `sslmode=verify-full`.
    pub async fn over_tls(name: &str) -> Fleet {
        Fleet {
            tls: true,
            ..Fleet::new(name).await
        }
    }

    /// The same, its services logging at info and exporting no spans, as
    /// a benchmark measures them: with no collector on this machine, the
    /// stack's Jaeger would take a share of the cores measured (0.36 of 2
    /// at 47 sagas/s, seen), and the per-message debug lines the tests
    /// read cost the services themselves.
    pub async fn unobserved(name: &str) -> Fleet {
        Fleet {
            observed: false,
            ..Fleet::new(name).await
        }
    }

    /// How the fleet's services reach the stack.
    fn connection_env(&self) -> Vec<(&'static str, String)> {
        let stack = Stack::get();
        // A killed member's partitions move on within seconds.
        let session = "session.timeout.ms=6000";
        if !self.tls {
            return vec![
                ("SLUICE_KAFKA_BOOTSTRAP", stack.kafka_bootstrap.clone()),
                ("SLUICE_KAFKA_PROPERTIES", session.into()),
                (
                    "SLUICE_SCHEMA_REGISTRY_URL",
                    stack.schema_registry_url.clone(),
                ),
                ("SLUICE_DATABASE_URL", self.database_url.clone()),
            ];
        }
        let ca = stack.tls_ca.display();
        vec![
            ("SLUICE_KAFKA_BOOTSTRAP", stack.kafka_ssl_bootstrap.clone()),
            (
                "SLUICE_KAFKA_PROPERTIES",
                format!("{session},security.protocol=SSL,ssl.ca.location={ca}"),
            ),
            (
                "SLUICE_SCHEMA_REGISTRY_URL",
                stack.schema_registry_tls_url.clone(),
            ),
            ("SLUICE_SCHEMA_REGISTRY_CA_FILE", ca.to_string()),
            (
                "SLUICE_DATABASE_URL",
                format!("{}?sslmode=verify-full&sslrootcert={ca}", self.database_url),
            ),
        ]
    }

    fn spawn(
        &self,
        binary_name: &str,
        label: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> KillOnDrop {
        let stack = Stack::get();
        let owned = |pairs: &[(&str, String)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<Vec<_>>()
        };
        let mut all_env = owned(&self.connection_env());
        if self.observed {
            all_env.extend(owned(&[
                // One debug line per message handled by ingest, the relay,
                // the saga and the sinks, so tests can find a message's log
                // lines by its fields.
                (
                    "SLUICE_LOG",
                    "info,rdkafka=warn,sqlx=warn,sluice_saga_orchestrator::handler=debug,sluice_erp_sink::sink=debug,sluice_sheets_sink::sink=debug,sluice_ingest::api=debug,sluice_outbox_relay::delivery=debug".into(),
                ),
                ("SLUICE_LOG_FORMAT", "json".into()),
                // Spans go to the stack's Jaeger, as the chart sends them to
                // a collector.
                ("OTEL_EXPORTER_OTLP_ENDPOINT", stack.otlp_endpoint.clone()),
            ]));
        } else {
            all_env.extend(owned(&[(
                "SLUICE_LOG",
                "info,rdkafka=warn,sqlx=warn".into(),
            )]));
        }
        all_env.extend(owned(env));
        let launch = Launch {
            binary: binary(binary_name),
            label: label.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: all_env,
            clear_env: true,
            logs: self.logs.clone(),
            in_image: None,
        };
        let child = launch
            .command()
            .and_then(|mut command| Ok(command.spawn()?))
            .unwrap_or_else(|err| panic!("starting {binary_name}: {err:#}"));
        KillOnDrop(child)
    }

    /// A saga-orchestrator replica; `args` are added to `run`'s. Returns
    /// once its tables exist.
    pub async fn orchestrator(&self, label: &str, args: &[&str]) -> (KillOnDrop, u16) {
        let (child, port) = self.start_orchestrator(label, args).await;
        self.until_prepared().await;
        (child, port)
    }

    /// Waits until an orchestrator has made the saga tables.
    pub async fn until_prepared(&self) {
        let pool = self.pool.clone();
        eventually("the saga tables", Duration::from_secs(60), || {
            let pool = pool.clone();
            async move {
                sqlx::query("SELECT to_regclass('saga.outbox') IS NOT NULL AS ready")
                    .fetch_one(&pool)
                    .await
                    .ok()
                    .filter(|row| row.get::<bool, _>("ready"))
            }
        })
        .await;
    }

    /// A saga-orchestrator replica, started; its /metrics, /healthz and
    /// /readyz port.
    pub async fn start_orchestrator(&self, label: &str, args: &[&str]) -> (KillOnDrop, u16) {
        let port = free_port();
        let t = &self.topics;
        let (slot, publication) = (self.slot(), self.publication());
        let mut all = vec![
            "run",
            "--events-topic",
            &t.orders,
            "--erp-topic",
            &t.erp_commands,
            "--erp-results-topic",
            &t.erp_results,
            "--sheets-topic",
            &t.sheet_rows,
            "--sheets-results-topic",
            &t.sheet_results,
            "--dlq-topic",
            &t.dlq_saga,
            "--group-id",
            &self.name,
            "--timeout-tick-ms",
            "200",
            "--outbox-slot",
            &slot,
            "--outbox-publication",
            &publication,
        ];
        all.extend_from_slice(args);
        let child = self.spawn(
            "saga-orchestrator",
            label,
            &all,
            &[("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{port}"))],
        );
        (child, port)
    }

    /// The shipped saga with its ERP step's `timeout` and `retries`
    /// changed, written for `--saga`; its path.
    pub fn saga_with_erp_timing(&self, timeout: &str, retries: i64) -> String {
        let mut saga: toml::Table = toml::from_str(ORDER_FULFILMENT).unwrap();
        let steps = saga
            .get_mut("steps")
            .and_then(toml::Value::as_array_mut)
            .unwrap();
        let erp = steps[0].as_table_mut().unwrap();
        erp.insert("timeout".into(), timeout.into());
        erp.insert("retries".into(), retries.into());
        let path = self.logs.join(format!("saga-{timeout}-{retries}.toml"));
        std::fs::write(&path, toml::to_string(&saga).unwrap()).unwrap();
        path.display().to_string()
    }

    /// What the service started as `label` has logged so far.
    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("{label}.log"))).unwrap_or_default()
    }

    /// Runs `saga-orchestrator` with `args` (list, show) on the fleet's
    /// database; its exit code and stdout.
    pub fn cli(&self, args: &[&str]) -> (i32, String) {
        let output = Command::new(binary("saga-orchestrator"))
            .args(args)
            .env_clear()
            .envs(self.connection_env())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// The orchestrator's /metrics on `port`.
    pub async fn metrics(port: u16) -> String {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// outbox-relay streaming the orchestrator's outbox.
    pub async fn relay(&self) -> KillOnDrop {
        let (slot, publication) = (self.slot(), self.publication());
        self.spawn(
            "outbox-relay",
            "relay",
            &[
                "--outbox-table",
                "saga.outbox",
                "--outbox-format",
                "addressed",
                "--outbox-slot",
                &slot,
                "--outbox-publication",
                &publication,
                "--dlq-topic",
                &self.topics.dlq_relay,
            ],
            &[
                ("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{}", free_port())),
                // The fleet's topics carry test names, not topics.toml's.
                (
                    "SLUICE_OUTBOX_ALLOW_TOPICS",
                    [
                        &self.topics.orders,
                        &self.topics.erp_commands,
                        &self.topics.sheet_rows,
                    ]
                    .map(String::as_str)
                    .join(","),
                ),
            ],
        )
    }

    /// ingest routing orders to the fleet's topic, accepting `token`; returns
    /// it and the base URL of its events API.
    pub async fn ingest(&self, token: &str) -> (KillOnDrop, String) {
        let api = free_port();
        let child = self.spawn(
            "ingest",
            "ingest",
            &[],
            &[
                ("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{}", free_port())),
                ("SLUICE_INGEST_LISTEN", format!("127.0.0.1:{api}")),
                (
                    "SLUICE_INGEST_TOKEN_SHA256",
                    sluice_testkit::token_sha256(token),
                ),
                ("SLUICE_ROUTES", format!("orders={}", self.topics.orders)),
            ],
        );
        (child, format!("http://127.0.0.1:{api}"))
    }

    /// Posts an OrderPlaced for `order` to ingest's events API at `api` with
    /// `token` and `headers` until it is accepted (ingest may be starting).
    pub async fn take_in(&self, api: &str, token: &str, order: &str, headers: &[(&str, &str)]) {
        let body = serde_json::json!({
            "aggregate_type": "orders",
            "aggregate_id": order,
            "event_type": "OrderPlaced",
            "correlation_id": format!("checkout-{order}"),
            "payload": {
                "customer": {"customer_id": "c-1", "name": "Barbara Liskov", "email": "bl@example.test"},
                "lines": [{"sku": "SKU-1", "description": "Widget", "quantity": 2, "unit_price_minor": 1250}],
                "total_minor": 2500,
                "currency": "EUR",
                "shipping_country": "DE"
            }
        });
        let client = reqwest::Client::new();
        eventually(
            "ingest to accept the order",
            Duration::from_secs(60),
            || async {
                let request = client
                    .post(format!("{api}/v1/events"))
                    .bearer_auth(token)
                    .json(&body);
                let request = headers.iter().fold(request, |request, (name, value)| {
                    request.header(*name, *value)
                });
                (request.send().await.ok()?.status().as_u16() == 202).then_some(())
            },
        )
        .await;
    }

    /// erp-sink on the sandbox's Odoo, quick retries, `per_second` calls.
    pub async fn erp_sink(&self, per_second: u32) -> KillOnDrop {
        let rate = per_second.to_string();
        let group = format!("{}-erp", self.name);
        let mut args = sandbox_odoo(&self.sandbox.base).to_vec();
        args.extend([
            "--topic",
            &self.topics.erp_commands,
            "--results-topic",
            &self.topics.erp_results,
            "--dlq-topic",
            &self.topics.dlq_erp,
            "--audit-topic",
            &self.topics.audit,
            "--group-id",
            &group,
            "--requests-per-second",
            &rate,
            "--retry-initial-ms",
            "50",
            "--retry-max-ms",
            "500",
            "--breaker-open-secs",
            "1",
        ]);
        self.spawn(
            "erp-sink",
            "erp-sink",
            &args,
            &[("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{}", free_port()))],
        )
    }

    /// sheets-sink on the sandbox's Sheets, unpaced (the sandbox has no quota).
    pub async fn sheets_sink(&self) -> KillOnDrop {
        self.spawn(
            "sheets-sink",
            "sheets-sink",
            &[
                "--service-account",
                &self.key_file.display().to_string(),
                "--sheets-base-url",
                &self.sandbox.base,
                "--topic",
                &self.topics.sheet_rows,
                "--results-topic",
                &self.topics.sheet_results,
                "--dlq-topic",
                &self.topics.dlq_sheets,
                "--audit-topic",
                &self.topics.audit,
                "--group-id",
                &format!("{}-sheets", self.name),
                "--requests-per-second",
                "100",
                "--burst",
                "20",
                "--batch-linger-ms",
                "50",
            ],
            &[("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{}", free_port()))],
        )
    }

    /// Produces an OrderPlaced for each (order id, customer name), each with
    /// its own trace context (see [`trace_id`]).
    pub async fn place(&self, orders: &[(String, String)]) {
        let producer = producer();
        let mut sends = Vec::with_capacity(orders.len());
        for (order_id, customer) in orders {
            let event = placed(order_id, customer);
            let value = self
                .codec
                .encode(&self.topics.orders, &event)
                .await
                .unwrap();
            sends.push((order_id.clone(), value));
        }
        let deliveries: Vec<_> = sends
            .iter()
            .map(|(key, value)| {
                let traceparent = format!("00-{}-00f067aa0ba902b7-01", trace_id(key));
                let headers = OwnedHeaders::new().insert(Header {
                    key: "traceparent",
                    value: Some(&traceparent),
                });
                producer.send(
                    FutureRecord::to(&self.topics.orders)
                        .key(key)
                        .payload(value)
                        .headers(headers),
                    Duration::from_secs(30),
                )
            })
            .collect();
        // All at once: a send is queued only once polled, so awaiting one
        // after another waited a produce round trip (about 5.5 ms) per
        // order, and the saga benchmark could offer no more than ~180/s.
        for delivery in futures::future::join_all(deliveries).await {
            delivery.unwrap();
        }
    }

    /// Sagas per state.
    pub async fn states(&self) -> BTreeMap<String, i64> {
        sqlx::query("SELECT state, count(*) AS n FROM saga.sagas GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get("state"), row.get("n")))
            .collect()
    }

    /// Waits until `count` sagas have finished.
    pub async fn until_finished(&self, count: i64, within: Duration) -> BTreeMap<String, i64> {
        eventually(&format!("{count} finished sagas"), within, || async {
            let states = self.states().await;
            let finished: i64 = ["COMPLETED", "COMPENSATED", "FAILED"]
                .iter()
                .filter_map(|state| states.get(*state))
                .sum();
            (finished >= count).then_some(states)
        })
        .await
    }

    /// The state and failure of each saga, by order id.
    pub async fn outcomes(&self) -> BTreeMap<String, (String, Option<Value>)> {
        sqlx::query("SELECT business_key, state, failure FROM saga.sagas")
            .fetch_all(&self.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row.get("business_key"),
                    (row.get("state"), row.get("failure")),
                )
            })
            .collect()
    }

    /// Step log entries as (order id, step, attempt, event) with how often
    /// each occurs. A timeout after the compensation began counts as
    /// `compensation_timed_out`: a step's compensation has attempts of its
    /// own, numbered from 1 again.
    pub async fn step_log(&self) -> BTreeMap<(String, String, i32, String), i64> {
        sqlx::query(
            "SELECT s.business_key, l.step, l.attempt,
                    CASE WHEN l.event = 'timed_out' AND EXISTS (
                        SELECT 1 FROM saga.saga_steps c
                        WHERE c.saga_id = l.saga_id AND c.event = 'compensation_sent'
                          AND (c.version, c.entry) < (l.version, l.entry))
                    THEN 'compensation_timed_out' ELSE l.event END,
                    count(*) AS n
             FROM saga.saga_steps l JOIN saga.sagas s USING (saga_id)
             GROUP BY 1, 2, 3, 4",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                (row.get(0), row.get(1), row.get(2), row.get(3)),
                row.get::<i64, _>(4),
            )
        })
        .collect()
    }

    /// Rows in the orchestrator's outbox.
    pub async fn outbox_rows(&self) -> i64 {
        sqlx::query("SELECT count(*) FROM saga.outbox")
            .fetch_one(&self.pool)
            .await
            .unwrap()
            .get(0)
    }

    /// The sale orders in the sandbox ERP, by external reference.
    pub async fn erp_records(&self) -> BTreeMap<String, Vec<serde_json::Map<String, Value>>> {
        let mut by_ref: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for record in self.sandbox.records("sale.order").await.unwrap() {
            let reference = record
                .get("x_sluice_external_ref")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            by_ref.entry(reference).or_default().push(record);
        }
        by_ref
    }

    /// The Orders sheet's rows by order id: (how many rows, Status cell).
    pub async fn sheet_rows(&self) -> BTreeMap<String, (usize, String)> {
        let grid = self.sandbox.grid(SPREADSHEET, SHEET).await.unwrap();
        let Some((header, rows)) = grid.split_first() else {
            return BTreeMap::new();
        };
        let text = |cell: Option<&Value>| {
            cell.map(|value| match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
        };
        let status = header.iter().position(|h| h == "Status");
        let mut by_order: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for row in rows {
            let order = text(row.first());
            let cell = text(status.and_then(|i| row.get(i)));
            let entry = by_order.entry(order).or_default();
            entry.0 += 1;
            entry.1 = cell;
        }
        by_order
    }

    fn slot(&self) -> String {
        format!("{}_slot", self.name)
    }

    fn publication(&self) -> String {
        format!("{}_pub", self.name)
    }

    /// Stops the relay, drops its slot (a slot left behind holds WAL back)
    /// and the fleet's database.
    pub async fn finish(self, relay: KillOnDrop) {
        drop(relay);
        let slot = self.slot();
        let pool = &self.pool;
        eventually(
            "the relay's slot to be released",
            Duration::from_secs(30),
            || {
                let slot = slot.clone();
                async move {
                    let dropped = sqlx::query(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                     WHERE slot_name = $1 AND NOT active",
                    )
                    .bind(&slot)
                    .execute(pool)
                    .await
                    .is_ok();
                    let left: i64 = sqlx::query(
                        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                    )
                    .bind(&slot)
                    .fetch_one(pool)
                    .await
                    .map(|row| row.get(0))
                    .unwrap_or(1);
                    (dropped && left == 0).then_some(())
                }
            },
        )
        .await;
        self.pool.close().await;
        let admin = PgPool::connect(&Stack::get().database_url).await.unwrap();
        let drop = format!("DROP DATABASE {} WITH (FORCE)", self.name);
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&admin)
            .await
            .unwrap();
    }
}

/// Drops what a failed earlier run of test `name` left: its slot (which
/// holds WAL back) and its database. Test binaries run one at a time, so
/// nothing of this test is running now.
async fn sweep(admin: &PgPool, name: &str) {
    let prefix = format!("{}_", name.replace('-', "_"));
    let slots: Vec<String> = sqlx::query(
        "SELECT slot_name FROM pg_replication_slots WHERE NOT active AND starts_with(slot_name, $1)",
    )
    .bind(&prefix)
    .fetch_all(admin)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect();
    for slot in slots {
        let _ = sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(&slot)
            .execute(admin)
            .await;
    }
    let databases: Vec<String> =
        sqlx::query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(&prefix)
            .fetch_all(admin)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
    for database in databases {
        let drop = format!("DROP DATABASE {database} WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(admin).await;
    }
}

/// How many of `events` are OrderConfirmed (by their sluice.event_type header).
pub fn confirmed(events: &[rdkafka::message::OwnedMessage]) -> usize {
    events
        .iter()
        .filter(|m| {
            m.headers().is_some_and(|h| {
                h.iter().any(|h| {
                    h.key == "sluice.event_type" && h.value == Some(&b"OrderConfirmed"[..])
                })
            })
        })
        .count()
}

/// The W3C trace id the OrderPlaced of `order_id` is sent with.
pub fn trace_id(order_id: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, order_id.as_bytes())
        .simple()
        .to_string()
}

/// The trace id in a message's traceparent header.
pub fn trace_of(message: &impl Message) -> Option<String> {
    let header = message
        .headers()?
        .iter()
        .find(|header| header.key == "traceparent")?;
    let value = String::from_utf8_lossy(header.value?).into_owned();
    value.split('-').nth(1).map(str::to_owned)
}

/// An OrderPlaced for `order_id` by `customer`.
pub fn placed(order_id: &str, customer: &str) -> OrderEvent {
    OrderEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        event_type: "OrderPlaced".into(),
        occurred_at: sluice_contracts::now_millis(),
        aggregate_id: order_id.to_owned(),
        correlation_id: Some(format!("checkout-{order_id}")),
        causation_id: None,
        payload: OrderPayload::OrderPlaced(OrderPlaced {
            customer: Customer {
                customer_id: format!("c-{order_id}"),
                name: customer.to_owned(),
                email: format!("{order_id}@example.test"),
            },
            lines: vec![OrderLine {
                sku: "SKU-1".into(),
                description: "Widget".into(),
                quantity: 2,
                unit_price_minor: 1_250,
            }],
            total_minor: 2_500,
            currency: "EUR".into(),
            shipping_country: Some("DE".into()),
        }),
    }
}

/// The sandbox with the Orders sheet, its Odoo account (sluice / sandbox),
/// and the service-account key its token endpoint accepts.
async fn sandbox() -> (Local, ServiceAccountKey) {
    let port = Port::take().await.unwrap();
    let key =
        ServiceAccountKey::generate("saga@sandbox.test", &format!("{}/token", port.base)).unwrap();
    let issuer = TokenIssuer::new(
        &key.public_key_pem().unwrap(),
        &key.client_email,
        &key.token_uri,
    )
    .unwrap();
    let app = Sandbox::new(
        issuer,
        OdooAccount {
            database: "sluice".into(),
            login: "sluice".into(),
            password: "sandbox".into(),
        },
    );
    app.create_spreadsheet(SPREADSHEET, &[SHEET.to_owned()]);
    (port.serve(app), key)
}

/// Order ids `<prefix>-0000` … for a test.
pub fn order_ids(prefix: &str, count: usize) -> Vec<String> {
    let run = unique_name(prefix);
    (0..count).map(|i| format!("{run}-{i:04}")).collect()
}

/// Fails naming every step log entry (order, step, attempt, event) logged
/// more than once.
pub fn assert_each_once(log: &BTreeMap<(String, String, i32, String), i64>) {
    let repeated: Vec<_> = log.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "step log entries repeat: {repeated:?}");
}

/// `count` new orders, all by `customer`, as [`Fleet::place`] takes them.
pub fn orders_by(prefix: &str, count: usize, customer: &str) -> Vec<(String, String)> {
    order_ids(prefix, count)
        .into_iter()
        .map(|id| (id, customer.to_owned()))
        .collect()
}
