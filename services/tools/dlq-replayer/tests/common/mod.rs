//! dlq-replayer tests' shared parts: running the CLI as an operator would,
//! DLQ topics named like DLQs, and dead letters written by the real
//! publisher.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::num::NonZeroU32;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use reqwest::Client;
use serde_json::Value;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{DeadLetterClass, ErpCommand, ErpField, ErpOperation, ScalarValue};
use sluice_dlq::{DeadLetterPublisher, Failure};
use sluice_erp_sink::odoo::{OdooClient, OdooLogin, Protocol};
use sluice_erp_sink::{Applier, ErpSink, RecordFields};
use sluice_kafka::{AuditLog, ConsumerLoop, ConsumerSettings, KafkaConfig, ReplyPublisher};
use sluice_resilience::{BreakerConfig, CircuitBreaker, LimiterConfig, RateLimiter, RetryPolicy};
use sluice_sandbox::{Local, OdooAccount, Sandbox, ServiceAccountKey, TokenIssuer};
use sluice_testkit::{Stack, TestTopic, producer, unique_name};

/// What the CLI printed and how it exited.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout's JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

static AUDIT: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// The audit topic of this test binary: the CLI's and erp-sink's.
pub async fn audit_topic() -> &'static str {
    AUDIT
        .get_or_init(|| async {
            TestTopic::with_schema_of("audit.v1", "replayer-audit", 1)
                .await
                .name
        })
        .await
}

/// The JSON lines whose string `field` `matches`.
pub fn lines_where<'a>(
    lines: &'a [Value],
    field: &str,
    matches: impl Fn(&str) -> bool,
) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|line| line[field].as_str().is_some_and(&matches))
        .collect()
}

/// The CLI with the local stack's settings in its environment (its audit
/// topic made by [`audit_topic`] first).
pub fn cli(args: &[&str]) -> Command {
    let stack = Stack::get();
    let audit = AUDIT
        .get()
        .expect("audit_topic() is awaited before the CLI runs");
    let mut command = Command::new(env!("CARGO_BIN_EXE_dlq-replayer"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("USER", "test-operator")
        .env("SLUICE_KAFKA_BOOTSTRAP", &stack.kafka_bootstrap)
        .env("SLUICE_SCHEMA_REGISTRY_URL", &stack.schema_registry_url)
        .env("SLUICE_DATABASE_URL", &stack.database_url)
        .env("SLUICE_AUDIT_TOPIC", audit)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the CLI to its end.
pub async fn run(args: &[&str]) -> Run {
    run_with(args, &[]).await
}

/// Runs the CLI to its end with `env` changed.
pub async fn run_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    audit_topic().await;
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let Output {
            status,
            stdout,
            stderr,
        } = cli(&args).envs(env).output().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// A DLQ topic of its own for the test, named like one (`dlq.<unique>.v1`).
pub async fn dlq_topic(prefix: &str) -> TestTopic {
    let name = format!("dlq.{}.v1", unique_name(prefix));
    TestTopic::with_schema_named("dlq.erp-sink.v1", name, 1).await
}

/// Produces `count` raw messages to `topic` (keys `k-<n>`, values `v-<n>`,
/// a header), reads them back and dead-letters each through the real
/// publisher, as a service that refused them would.
pub async fn dead_letters(topic: &str, dlq: &str, count: usize) {
    let producer = producer();
    for n in 0..count {
        let headers = OwnedHeaders::new().insert(Header {
            key: "x-order",
            value: Some(n.to_string().as_bytes()),
        });
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&format!("k-{n}"))
                    .payload(&format!("v-{n}"))
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }
    let originals = read(topic, count).await;
    let publisher = DeadLetterPublisher::new(
        producer.clone(),
        Arc::new(AvroCodec::new(Stack::get().registry_settings())),
        dlq,
        "test-service",
        "0.0.0",
    );
    let now = sluice_contracts::now_millis();
    for message in &originals {
        publisher
            .publish(
                message,
                Failure {
                    class: DeadLetterClass::Permanent,
                    message: "HTTP 400 from the test target".into(),
                    attempts: 1,
                    first_failure_at: now,
                    last_failure_at: now,
                },
            )
            .await
            .unwrap();
    }
}

/// The first `count` messages of `topic`, from its start.
pub async fn read(topic: &str, count: usize) -> Vec<OwnedMessage> {
    read_from(topic, 0, count).await
}

/// `count` messages of `topic` (one partition) from `offset`.
pub async fn read_from(topic: &str, offset: i64, count: usize) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = Stack::get()
        .kafka_config()
        .set("group.id", unique_name("replayer-test"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Offset(offset))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut stream = consumer.stream();
    let mut messages = Vec::with_capacity(count);
    tokio::time::timeout(Duration::from_secs(60), async {
        while messages.len() < count {
            messages.push(stream.next().await.unwrap().unwrap().detach());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {count} messages of {topic}", messages.len()));
    messages
}

/// A header's value as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The end offset of partition 0 of `topic`.
pub fn end_offset(topic: &str) -> i64 {
    let consumer: StreamConsumer = Stack::get().kafka_config().create().unwrap();
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap()
        .1
}

/// The sandbox, its Odoo at login sluice/sandbox.
pub async fn sandbox() -> Local {
    let key = ServiceAccountKey::generate("unused@sandbox.test", "unused").unwrap();
    let issuer =
        TokenIssuer::new(&key.public_key_pem().unwrap(), &key.client_email, "unused").unwrap();
    let odoo = OdooAccount {
        database: "sluice".into(),
        login: "sluice".into(),
        password: "sandbox".into(),
    };
    Local::start(Sandbox::new(issuer, odoo)).await.unwrap()
}

/// erp-sink on `commands` in a group of its own, dead-lettering to `dlq`,
/// until the sender fires.
pub async fn start_erp_sink(
    base: &str,
    commands: &str,
    results: &str,
    dlq: &str,
) -> tokio::sync::oneshot::Sender<()> {
    start_erp_sink_in(
        &unique_name("replayer-erp"),
        Duration::from_secs(300),
        base,
        commands,
        results,
        dlq,
    )
    .await
    .0
}

/// erp-sink on `commands` in `group`, its partitions named stalled after
/// `stall_after`, until the sender fires; the handle ends when it stopped.
pub async fn start_erp_sink_in(
    group: &str,
    stall_after: Duration,
    base: &str,
    commands: &str,
    results: &str,
    dlq: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let stack = Stack::get();
    let kafka = KafkaConfig::new(&stack.kafka_bootstrap);
    let codec = Arc::new(AvroCodec::new(stack.registry_settings()));
    let client = OdooClient::new(
        Client::new(),
        OdooLogin {
            url: base.to_owned(),
            protocol: Protocol::JsonRpc,
            database: "sluice".into(),
            login: "sluice".into(),
            password: "sandbox".to_owned().into(),
        },
        CircuitBreaker::new(
            "erp",
            BreakerConfig {
                failure_threshold: 50,
                failure_rate: None,
                slow_call: None,
                open_wait: Duration::from_secs(1),
                half_open_permits: 1,
                success_threshold: 1,
            },
        )
        .unwrap(),
        Arc::new(
            RateLimiter::new(
                "erp",
                LimiterConfig {
                    capacity: NonZeroU32::new(50).unwrap(),
                    refill_per_second: 1_000.0,
                },
            )
            .unwrap(),
        ),
    );
    let sink = ErpSink::new(
        AvroCodec::new(stack.registry_settings()),
        Applier::new(
            client,
            RecordFields {
                external_ref: "x_sluice_external_ref".into(),
                applied_commands: "x_sluice_commands".into(),
            },
        ),
        ReplyPublisher::immediate(&kafka, Arc::clone(&codec), results).unwrap(),
        AuditLog::new(
            ReplyPublisher::immediate(&kafka, Arc::clone(&codec), audit_topic().await).unwrap(),
            "erp-sink",
            "erp-sink@test".into(),
        ),
    );
    let settings = ConsumerSettings {
        group_id: group.to_owned(),
        topics: vec![commands.to_owned()],
        partition_buffer: 16,
        max_concurrent: 2,
        max_batch: 1,
        batch_linger: Duration::ZERO,
        retry: RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            multiplier: 2.0,
            jitter: 0.0,
            max_elapsed: None,
        },
        pause_backoff: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
        revoke_wait: Duration::from_secs(5),
        stall_after,
    };
    let dead_letters = DeadLetterPublisher::new(producer(), codec, dlq, "erp-sink", "0.1.0");
    let run = ConsumerLoop::new(&kafka, settings, sink, dead_letters).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        run.run(async { stopped.await.unwrap_or(()) })
            .await
            .unwrap()
    });
    (stop, running)
}

/// Command `n`: an `operation` of sale order `reference` with `note`, from
/// event [`event_of`] `n` in flow `checkout-<n>`.
pub fn command(n: u32, operation: ErpOperation, reference: &str, note: &str) -> ErpCommand {
    ErpCommand {
        command_id: format!("00000000-0000-4000-8000-{n:012}"),
        model: "sale.order".into(),
        operation,
        external_ref: reference.into(),
        // A sale order needs its customer (erp-sink finds or makes the
        // res.partner by e-mail).
        fields: [
            ("partner_id.email", "buyer@example.test"),
            ("partner_id.name", "Test Buyer"),
            ("note", note),
        ]
        .into_iter()
        .map(|(name, value)| ErpField {
            name: name.into(),
            value: ScalarValue::String(value.into()),
        })
        .collect(),
        source_event_id: Some(event_of(n)),
        issued_at: 1_795_437_296_789,
        saga: None,
        correlation_id: Some(format!("checkout-{n}")),
        causation_id: Some(event_of(n)),
    }
}

/// The id of the event command `n` comes from.
pub fn event_of(n: u32) -> String {
    format!("00000000-0000-4000-9000-{n:012}")
}
