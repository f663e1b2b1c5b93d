//! sheets-sink tests' shared parts: the sandbox, the sink in a consumer
//! loop, commands, and reading the sheet back.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use reqwest::Client;
use serde_json::Value;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{AuditRecord, ScalarValue, SheetCell, SheetRowUpsert};
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{AuditLog, ConsumerLoop, ConsumerSettings, KafkaConfig, ReplyPublisher};
use sluice_resilience::{BreakerConfig, CircuitBreaker, LimiterConfig, RateLimiter, RetryPolicy};
use sluice_sandbox::{AppState, Local, OdooAccount, Port, Sandbox, ServiceAccountKey, TokenIssuer};
use sluice_sheets_sink::google::{self, SheetsClient, TokenSource};
use sluice_sheets_sink::{SheetsSink, Upserter, VERSION_COLUMN};
use sluice_testkit::{Stack, TestTopic, committed_messages, producer, unique_name};

pub const WAIT: Duration = Duration::from_secs(60);

/// The audit topic of every sink this test binary runs (a child process
/// is given its parent's in `AUDIT`).
static AUDIT: LazyLock<String> =
    LazyLock::new(|| std::env::var("AUDIT").unwrap_or_else(|_| unique_name("sheets-audit")));

/// Makes [`AUDIT`] (once, in the process that named it) and names it.
pub async fn audit_topic() -> &'static str {
    static MADE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    MADE.get_or_init(|| async {
        // A child process's is its parent's, made already.
        if std::env::var_os("AUDIT").is_none() {
            TestTopic::with_schema_named("audit.v1", AUDIT.clone(), 3).await;
        }
    })
    .await;
    &AUDIT
}

/// The audit records naming any of the commands `command_ids` names (in
/// the record or in one of its rows), as far as they are on Kafka now.
pub async fn audited(command_ids: &[String]) -> Vec<AuditRecord> {
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let wanted: std::collections::HashSet<&String> = command_ids.iter().collect();
    let mut records = Vec::new();
    for message in committed_messages(audit_topic().await).await {
        let record: AuditRecord = codec
            .decode(rdkafka::Message::payload(&message).unwrap())
            .await
            .unwrap();
        let named = |id: &Option<String>| id.as_ref().is_some_and(|id| wanted.contains(id));
        if named(&record.command_id)
            || record
                .rows
                .iter()
                .flatten()
                .any(|row| named(&row.command_id))
        {
            records.push(record);
        }
    }
    records
}

/// Records what a sink of this binary does (on [`AUDIT`], made before a
/// sink runs).
pub fn audit_log() -> AuditLog {
    let stack = Stack::get();
    AuditLog::new(
        ReplyPublisher::new(
            &KafkaConfig::new(&stack.kafka_bootstrap),
            Arc::new(AvroCodec::new(stack.registry_settings())),
            AUDIT.as_str(),
        )
        .unwrap(),
        "sheets-sink",
        "sheets-sink@test".into(),
    )
}

/// One key per test process (RSA key generation takes a moment).
pub fn key(token_uri: &str) -> ServiceAccountKey {
    static KEY: OnceLock<ServiceAccountKey> = OnceLock::new();
    let mut key = KEY
        .get_or_init(|| ServiceAccountKey::generate("sink@sandbox.test", "unset").unwrap())
        .clone();
    key.token_uri = token_uri.to_owned();
    key
}

/// A sandbox with spreadsheet `s1` (sheet Orders); its base URL and the key
/// its token endpoint accepts.
pub async fn sandbox() -> (String, ServiceAccountKey) {
    let (base, key, _) = sandbox_delegating(None).await;
    (base, key)
}

/// [`sandbox`] whose account may act for the users of `domain`, and the
/// sandbox itself (to share its spreadsheets).
pub async fn sandbox_delegating(domain: Option<&str>) -> (String, ServiceAccountKey, AppState) {
    let port = Port::take().await.unwrap();
    let key = key(&format!("{}/token", port.base));
    let mut issuer = TokenIssuer::new(
        &key.public_key_pem().unwrap(),
        &key.client_email,
        &key.token_uri,
    )
    .unwrap();
    if let Some(domain) = domain {
        issuer = issuer.with_delegation(domain);
    }
    let app = Sandbox::new(
        issuer,
        OdooAccount {
            database: "unused".into(),
            login: "unused".into(),
            password: "unused".into(),
        },
    );
    app.create_spreadsheet(
        "s1",
        &["Orders", "Sheet0", "Sheet1", "Sheet2"].map(str::to_owned),
    );
    (port.serve(Arc::clone(&app)).base, key, app)
}

/// How the sink under test is paced, guarded and retried.
pub struct Tuning {
    pub limiter: LimiterConfig,
    pub breaker: BreakerConfig,
    pub retry: RetryPolicy,
    pub group: String,
    /// Most commands of a partition written together.
    pub max_batch: usize,
    /// Partitions handled at once.
    pub max_concurrent: usize,
    /// Whether the replica paces its limiter to its partitions' share.
    pub shared_quota: bool,
    /// Sheets written USER_ENTERED (`--user-entered`).
    pub user_entered: Vec<String>,
}

impl Tuning {
    /// Fast enough not to be in the way; a breaker that rarely opens.
    pub fn quick() -> Self {
        Self {
            limiter: LimiterConfig {
                capacity: NonZeroU32::new(50).unwrap(),
                refill_per_second: 500.0,
            },
            breaker: BreakerConfig {
                failure_threshold: 50,
                failure_rate: None,
                slow_call: None,
                open_wait: Duration::from_secs(1),
                half_open_permits: 1,
                success_threshold: 1,
            },
            retry: RetryPolicy {
                max_retries: 8,
                initial_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(200),
                multiplier: 2.0,
                jitter: 0.2,
                max_elapsed: None,
            },
            group: unique_name("sheets-sink"),
            max_batch: 100,
            max_concurrent: 3,
            shared_quota: false,
            user_entered: Vec::new(),
        }
    }
}

/// Runs the sink on `topic` until the returned sender fires.
pub fn start(
    base: &str,
    key: &ServiceAccountKey,
    topic: &str,
    dlq: &str,
) -> tokio::sync::oneshot::Sender<()> {
    start_with(base, key, topic, dlq, Tuning::quick())
}

/// An upserter writing to the sandbox at `base`, paced by `limiter`, each
/// call guarded by `breaker`.
pub fn upserter(
    base: &str,
    key: &ServiceAccountKey,
    limiter: LimiterConfig,
    breaker: BreakerConfig,
) -> Upserter {
    upserter_paced(base, key, Arc::new(paced(limiter)), breaker)
}

/// An upserter writing to the sandbox at `base` as `key`'s account,
/// paced by `limiter`.
fn upserter_paced(
    base: &str,
    key: &ServiceAccountKey,
    limiter: Arc<RateLimiter>,
    breaker: BreakerConfig,
) -> Upserter {
    let tokens = TokenSource::new(sink_key(key), None, http()).unwrap();
    upserter_with(base, tokens, limiter, breaker)
}

/// The limiter of the sink's account.
pub fn paced(limiter: LimiterConfig) -> RateLimiter {
    RateLimiter::new("sheets", limiter).unwrap()
}

/// The sandbox's key as the sink reads it.
pub fn sink_key(key: &ServiceAccountKey) -> google::ServiceAccountKey {
    serde_json::from_value(serde_json::to_value(key).unwrap()).unwrap()
}

/// The sink's HTTP client.
pub fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// An upserter writing to the sandbox at `base` with `tokens`.
pub fn upserter_with(
    base: &str,
    tokens: TokenSource,
    limiter: impl Into<Arc<RateLimiter>>,
    breaker: BreakerConfig,
) -> Upserter {
    Upserter::new(SheetsClient::new(
        base,
        http(),
        tokens,
        limiter.into(),
        CircuitBreaker::new("sheets", breaker).unwrap(),
    ))
}

/// Runs the sink, tuned, on `topic` until the returned sender fires.
pub fn start_with(
    base: &str,
    key: &ServiceAccountKey,
    topic: &str,
    dlq: &str,
    tuning: Tuning,
) -> tokio::sync::oneshot::Sender<()> {
    let stack = Stack::get();
    let limiter = Arc::new(paced(tuning.limiter));
    let shared_quota = tuning.shared_quota;
    let sink = SheetsSink {
        codec: AvroCodec::new(stack.registry_settings()),
        upserter: upserter_paced(base, key, Arc::clone(&limiter), tuning.breaker)
            .user_entered(tuning.user_entered),
        replies: ReplyPublisher::new(
            &KafkaConfig::new(&stack.kafka_bootstrap),
            Arc::new(AvroCodec::new(stack.registry_settings())),
            "sheets.results.v1",
        )
        .unwrap(),
        audit: audit_log(),
    };
    let settings = ConsumerSettings {
        group_id: tuning.group,
        topics: vec![topic.to_owned()],
        partition_buffer: tuning
            .max_batch
            .max(sluice_service::Tuning::default().partition_buffer),
        max_concurrent: tuning.max_concurrent,
        max_batch: tuning.max_batch,
        batch_linger: Duration::from_millis(50),
        retry: tuning.retry,
        pause_backoff: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
        revoke_wait: Duration::from_secs(5),
        stall_after: Duration::from_secs(300),
    };
    let dead_letters = DeadLetterPublisher::new(
        producer(),
        Arc::new(AvroCodec::new(stack.registry_settings())),
        dlq,
        "sheets-sink",
        "0.0.0",
    );
    // A killed instance's partitions move on after 6 s, not the default 45.
    let kafka =
        KafkaConfig::new(&stack.kafka_bootstrap).with_property("session.timeout.ms", "6000");
    let mut run = ConsumerLoop::new(&kafka, settings, sink, dead_letters).unwrap();
    if shared_quota {
        run = run.sharing(limiter);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        audit_topic().await;
        run.run(async { stopped.await.unwrap_or(()) })
            .await
            .unwrap()
    });
    stop
}

pub fn command(id: &str, key: &str, total: &str, status: Option<&str>) -> SheetRowUpsert {
    let mut cells = vec![
        SheetCell {
            column: "Order".into(),
            value: ScalarValue::String(key.into()),
        },
        SheetCell {
            column: "Total".into(),
            value: ScalarValue::String(total.into()),
        },
    ];
    if let Some(status) = status {
        cells.push(SheetCell {
            column: "Status".into(),
            value: ScalarValue::String(status.into()),
        });
    }
    SheetRowUpsert {
        command_id: id.into(),
        spreadsheet_id: "s1".into(),
        sheet: "Orders".into(),
        row_key: key.into(),
        cells,
        source_event_id: id.into(),
        occurred_at: 1_795_437_296_789,
        saga: None,
        correlation_id: None,
        causation_id: None,
    }
}

/// Produces the commands, keyed by sheet and row key, all at once.
pub async fn send(topic: &str, commands: &[SheetRowUpsert]) {
    send_to(topic, None, commands).await;
}

/// Produces the commands, keyed by sheet and row key, all at once, to
/// `partition` if one is given (else the key's).
pub async fn send_to(topic: &str, partition: Option<i32>, commands: &[SheetRowUpsert]) {
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut encoded = Vec::with_capacity(commands.len());
    for command in commands {
        encoded.push((
            format!("s1/Orders/{}", command.row_key),
            codec.encode(topic, command).await.unwrap(),
        ));
    }
    let producer = producer();
    let sends = encoded.iter().map(|(key, bytes)| {
        let record = FutureRecord::to(topic).key(key).payload(bytes);
        let record = match partition {
            Some(partition) => record.partition(partition),
            None => record,
        };
        producer.send(record, Duration::from_secs(60))
    });
    for sent in futures::future::join_all(sends).await {
        sent.unwrap();
    }
}

/// The Orders sheet of `s1` as [`visible`] shows it.
pub async fn grid(base: &str) -> Vec<Vec<Value>> {
    grid_of(base, "Orders").await
}

/// The cells of sheet `sheet` of `s1` as [`visible`] shows them.
pub async fn grid_of(base: &str, sheet: &str) -> Vec<Vec<Value>> {
    visible(&sheet_of(base, sheet).await)
}

/// The cells of sheet `sheet` of `s1`, from the sandbox, every column.
pub async fn sheet_of(base: &str, sheet: &str) -> Vec<Vec<Value>> {
    Local::at(base).grid("s1", sheet).await.unwrap()
}

/// A sheet's cells but the column of row versions, as the API would
/// answer without it (trailing empty cells left out).
pub fn visible(grid: &[Vec<Value>]) -> Vec<Vec<Value>> {
    let header = grid.first().into_iter().flatten();
    let Some(at) = header.into_iter().position(|name| name == VERSION_COLUMN) else {
        return grid.to_vec();
    };
    grid.iter()
        .map(|row| {
            let mut row = row.clone();
            if at < row.len() {
                row.remove(at);
            }
            while row.len() > 1 && row.last() == Some(&Value::String(String::new())) {
                row.pop();
            }
            row
        })
        .collect()
}

pub async fn faults(base: &str, faults: Value) {
    Local::at(base).set_faults("sheets", &faults).await.unwrap();
}

pub fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// The sandbox's log of Sheets requests, oldest first.
pub async fn request_log(base: &str) -> Vec<Value> {
    Local::at(base).requests("sheets").await.unwrap()
}

/// When each logged request arrived, ms since the epoch, oldest first.
pub async fn request_times(base: &str) -> Vec<i64> {
    request_log(base)
        .await
        .iter()
        .map(|r| r["at_ms"].as_i64().unwrap())
        .collect()
}
