//! erp-sink tests' shared parts: the sandbox's Odoo, the sink in a consumer
//! loop, commands, and reading back the ERP's records and the results.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::producer::FutureRecord;
use reqwest::Client;
use serde_json::{Map, Value};
use sluice_avro::AvroCodec;
use sluice_contracts::types::{
    AuditRecord, ErpCommand, ErpField, ErpOperation, ErpResult, ScalarValue,
};
use sluice_dlq::DeadLetterPublisher;
use sluice_erp_sink::cli::Erp;
use sluice_erp_sink::odoo::{OdooClient, OdooLogin, Protocol};
use sluice_erp_sink::{Applier, ErpSink, RecordFields};
use sluice_kafka::{AuditLog, ConsumerLoop, ConsumerSettings, KafkaConfig, ReplyPublisher};
use sluice_resilience::{BreakerConfig, CircuitBreaker, LimiterConfig, RateLimiter, RetryPolicy};
use sluice_sandbox::{Local, OdooAccount, Sandbox, ServiceAccountKey, TokenIssuer};
use sluice_service::Defaults;
use sluice_testkit::{Stack, TestTopic, consume_exactly, producer, unique_name};

pub const WAIT: Duration = Duration::from_secs(60);
pub const MODEL: &str = "sale.order";
pub const DATABASE: &str = "sluice";
pub const LOGIN: &str = "erp-sink";
pub const PASSWORD: &str = "sandbox-password";

/// A sandbox whose Odoo accepts [`LOGIN`] on [`DATABASE`]; its base URL.
pub async fn sandbox() -> String {
    // The Sheets side is not used here, but the sandbox serves both.
    let key = ServiceAccountKey::generate("unused@sandbox.test", "unused").unwrap();
    let issuer =
        TokenIssuer::new(&key.public_key_pem().unwrap(), &key.client_email, "unused").unwrap();
    let app = Sandbox::new(
        issuer,
        OdooAccount {
            database: DATABASE.into(),
            login: LOGIN.into(),
            password: PASSWORD.into(),
        },
    );
    Local::start(app).await.unwrap().base
}

/// The topics one test uses.
pub struct Topics {
    pub commands: TestTopic,
    pub results: TestTopic,
    pub dlq: TestTopic,
    pub audit: TestTopic,
}

impl Topics {
    pub async fn create(prefix: &str, partitions: i32) -> Self {
        Self {
            commands: TestTopic::with_schema_of(
                "erp.commands.v1",
                &format!("{prefix}-commands"),
                partitions,
            )
            .await,
            results: TestTopic::with_schema_of(
                "erp.results.v1",
                &format!("{prefix}-results"),
                partitions,
            )
            .await,
            dlq: TestTopic::with_schema_of("dlq.erp-sink.v1", &format!("{prefix}-dlq"), 1).await,
            audit: TestTopic::with_schema_of("audit.v1", &format!("{prefix}-audit"), 1).await,
        }
    }
}

/// How the sink under test is paced, guarded and retried.
pub struct Tuning {
    pub limiter: LimiterConfig,
    pub breaker: BreakerConfig,
    pub retry: RetryPolicy,
    pub group: String,
    pub max_concurrent: usize,
    /// Which of Odoo's APIs the sink calls.
    pub protocol: Protocol,
    /// Whether the replica paces its limiter to its partitions' share.
    pub shared_quota: bool,
    /// Who the replica's audit records say did it.
    pub actor: String,
    /// How long one Odoo call may take.
    pub call_timeout: Duration,
    /// How long a create that got no answer may still be committed.
    pub settle: Duration,
}

impl Tuning {
    /// Fast enough not to be in the way; a breaker that rarely opens.
    pub fn quick() -> Self {
        Self {
            limiter: LimiterConfig {
                capacity: NonZeroU32::new(50).unwrap(),
                refill_per_second: 2_000.0,
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
            group: unique_name("erp-sink"),
            max_concurrent: 6,
            protocol: Protocol::JsonRpc,
            shared_quota: false,
            actor: "erp-sink@test".into(),
            call_timeout: CALL_TIMEOUT,
            settle: Duration::from_secs(2),
        }
    }
}

/// An applier writing to the sandbox's Odoo at `base` over JSON-RPC.
pub fn applier(base: &str, breaker: BreakerConfig, limiter: LimiterConfig) -> Applier {
    applier_over(base, Protocol::JsonRpc, breaker, limiter)
}

/// An applier writing to the sandbox's Odoo at `base` over `protocol`.
pub fn applier_over(
    base: &str,
    protocol: Protocol,
    breaker: BreakerConfig,
    limiter: LimiterConfig,
) -> Applier {
    applier_as(login(base, protocol), breaker, limiter)
}

/// The test account on the sandbox at `base`, over `protocol`.
pub fn login(base: &str, protocol: Protocol) -> OdooLogin {
    OdooLogin {
        url: base.to_owned(),
        protocol,
        database: DATABASE.into(),
        login: LOGIN.into(),
        password: PASSWORD.to_owned().into(),
    }
}

/// An applier logging in as `login`.
pub fn applier_as(login: OdooLogin, breaker: BreakerConfig, limiter: LimiterConfig) -> Applier {
    let limiter = Arc::new(RateLimiter::new("erp", limiter).unwrap());
    paced_applier(
        login,
        breaker,
        limiter,
        CALL_TIMEOUT,
        Duration::from_secs(2),
    )
}

/// An applier over `protocol` whose calls may each take `timeout`.
pub fn applier_waiting(base: &str, protocol: Protocol, timeout: Duration) -> Applier {
    let tuning = Tuning::quick();
    let limiter = Arc::new(RateLimiter::new("erp", tuning.limiter).unwrap());
    paced_applier(
        login(base, protocol),
        tuning.breaker,
        limiter,
        timeout,
        tuning.settle,
    )
}

/// How long one Odoo call may take in these tests.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// An applier logging in as `login`, paced by `limiter`.
fn paced_applier(
    login: OdooLogin,
    breaker: BreakerConfig,
    limiter: Arc<RateLimiter>,
    timeout: Duration,
    settle: Duration,
) -> Applier {
    let http = Client::builder().timeout(timeout).build().unwrap();
    Applier::new(
        OdooClient::new(
            http,
            login,
            CircuitBreaker::new("erp", breaker).unwrap(),
            limiter,
        )
        .settle_after(settle),
        RecordFields {
            external_ref: "x_sluice_external_ref".into(),
            applied_commands: "x_sluice_commands".into(),
        },
    )
}

/// Runs the sink until the returned sender fires.
pub fn start(base: &str, topics: &Topics, tuning: Tuning) -> tokio::sync::oneshot::Sender<()> {
    let stack = Stack::get();
    let limiter = Arc::new(RateLimiter::new("erp", tuning.limiter).unwrap());
    let shared_quota = tuning.shared_quota;
    let codec = Arc::new(AvroCodec::new(stack.registry_settings()));
    let sink = ErpSink::new(
        AvroCodec::new(stack.registry_settings()),
        paced_applier(
            login(base, tuning.protocol),
            tuning.breaker,
            Arc::clone(&limiter),
            tuning.call_timeout,
            tuning.settle,
        ),
        ReplyPublisher::new(
            &KafkaConfig::new(&stack.kafka_bootstrap),
            Arc::clone(&codec),
            &topics.results.name,
        )
        .unwrap(),
        AuditLog::new(
            ReplyPublisher::new(
                &KafkaConfig::new(&stack.kafka_bootstrap),
                Arc::clone(&codec),
                &topics.audit.name,
            )
            .unwrap(),
            "erp-sink",
            tuning.actor,
        ),
    );
    let settings = ConsumerSettings {
        group_id: tuning.group,
        topics: vec![topics.commands.name.clone()],
        partition_buffer: sluice_service::Tuning::default().partition_buffer,
        max_concurrent: tuning.max_concurrent,
        // What queued of a partition goes at once, as the service does.
        max_batch: <Erp as Defaults>::MAX_BATCH,
        batch_linger: Duration::ZERO,
        retry: tuning.retry,
        pause_backoff: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
        revoke_wait: Duration::from_secs(5),
        stall_after: Duration::from_secs(300),
    };
    let dead_letters =
        DeadLetterPublisher::new(producer(), codec, &topics.dlq.name, "erp-sink", "0.0.0");
    // A killed instance's partitions move on after 6 s, not the default 45.
    let kafka =
        KafkaConfig::new(&stack.kafka_bootstrap).with_property("session.timeout.ms", "6000");
    let mut run = ConsumerLoop::new(&kafka, settings, sink, dead_letters).unwrap();
    if shared_quota {
        run = run.sharing(limiter);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        run.run(async { stopped.await.unwrap_or(()) })
            .await
            .unwrap()
    });
    stop
}

pub fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A command for `external_ref` whose sale order comes to `amount` (one
/// line of SKU-1 at that price; Odoo computes `amount_total` from it), for
/// the one test customer, with `note`.
pub fn command(
    n: u32,
    operation: ErpOperation,
    external_ref: &str,
    amount: f64,
    note: &str,
) -> ErpCommand {
    let field = |name: &str, value: ScalarValue| ErpField {
        name: name.into(),
        value,
    };
    let text = |value: &str| ScalarValue::String(value.into());
    ErpCommand {
        command_id: id(n),
        model: MODEL.into(),
        operation,
        external_ref: external_ref.into(),
        fields: vec![
            field("partner_id.email", text("buyer@example.test")),
            field("partner_id.name", text("Test Buyer")),
            field("order_line.0.product_id.default_code", text("SKU-1")),
            field("order_line.0.product_uom_qty", ScalarValue::Long(1)),
            field("order_line.0.price_unit", ScalarValue::Double(amount)),
            field("note", text(note)),
        ],
        source_event_id: Some(event_of(n)),
        issued_at: 1_795_437_296_789,
        saga: None,
        correlation_id: Some(format!("flow-{n}")),
        causation_id: Some(event_of(n)),
    }
}

/// The event command `n` comes from (its flow is `flow-<n>`).
pub fn event_of(n: u32) -> String {
    format!("00000000-0000-4000-9000-{n:012}")
}

/// Produces the commands, keyed by external reference, all at once.
pub async fn send(topic: &str, commands: &[ErpCommand]) {
    send_to(topic, None, commands).await;
}

/// Produces the commands, keyed by external reference, all at once, to
/// `partition` if one is given (else the key's).
pub async fn send_to(topic: &str, partition: Option<i32>, commands: &[ErpCommand]) {
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut encoded = Vec::with_capacity(commands.len());
    for command in commands {
        encoded.push((
            command.external_ref.clone(),
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

/// The ERP's sale orders.
pub async fn records(base: &str) -> Vec<Map<String, Value>> {
    Local::at(base).records(MODEL).await.unwrap()
}

/// Records by external reference; panics on a reference held twice.
pub fn by_ref(records: &[Map<String, Value>]) -> BTreeMap<String, Map<String, Value>> {
    let mut by_ref = BTreeMap::new();
    for record in records {
        let reference = record["x_sluice_external_ref"].as_str().unwrap().to_owned();
        let earlier = by_ref.insert(reference.clone(), record.clone());
        assert!(earlier.is_none(), "two records for {reference}");
    }
    by_ref
}

/// Exactly `count` values of `topic`, decoded.
async fn decoded<T: serde::de::DeserializeOwned>(topic: &str, count: usize) -> Vec<T> {
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut values = Vec::with_capacity(count);
    for message in consume_exactly(topic, count, WAIT).await {
        values.push(codec.decode(message.payload().unwrap()).await.unwrap());
    }
    values
}

/// Exactly `count` results, decoded.
pub async fn results(topic: &str, count: usize) -> Vec<ErpResult> {
    decoded(topic, count).await
}

/// The first `count` records of the audit topic, decoded.
pub async fn audit_trail(topic: &str, count: usize) -> Vec<AuditRecord> {
    decoded(topic, count).await
}

pub async fn faults(base: &str, faults: Value) {
    Local::at(base).set_faults("odoo", &faults).await.unwrap();
}

/// The sandbox's log of Odoo requests, oldest first.
pub async fn request_log(base: &str) -> Vec<Value> {
    Local::at(base).requests("odoo").await.unwrap()
}

/// When each logged request arrived, ms since the epoch, oldest first.
pub async fn request_times(base: &str) -> Vec<i64> {
    request_log(base)
        .await
        .iter()
        .map(|r| r["at_ms"].as_i64().unwrap())
        .collect()
}
