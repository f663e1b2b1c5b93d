//! Whether this process can still do its work. A part that cannot go on —
//! a Kafka client librdkafka gave up on, a loop that ended on its own — marks
//! the process dead: `/healthz` answers 503 with the reason from then on, and
//! the runtime stops the service and exits non-zero, so its supervisor
//! starts a new one. Process-wide, as the metrics recorder is, because the
//! clients that find out are made deep inside libraries, far from the
//! runtime that has to act.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::producer::FutureProducer;
use tokio::sync::watch;

static DEATH: LazyLock<watch::Sender<Option<String>>> = LazyLock::new(|| watch::Sender::new(None));

/// Set once the process was asked to stop (SIGTERM): it finishes its work
/// but takes no more (`/serving` answers 503).
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Marks the process as stopping.
pub fn mark_stopping() {
    STOPPING.store(true, Ordering::Relaxed);
}

/// Whether the process was asked to stop.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

/// Marks the process dead for `reason`; the first reason is the one kept.
pub fn mark_dead(reason: impl Into<String>) {
    let reason = reason.into();
    let marked = DEATH.send_if_modified(|death| {
        if death.is_some() {
            return false;
        }
        *death = Some(reason.clone());
        true
    });
    if marked {
        tracing::error!(reason, "this process cannot go on; stopping it");
    }
}

/// Why the process is dead, once it is.
pub fn dead() -> Option<String> {
    DEATH.borrow().clone()
}

/// Completes, with the reason, once the process is marked dead.
pub async fn died() -> String {
    let mut receiver = DEATH.subscribe();
    let death = receiver
        .wait_for(Option::is_some)
        .await
        .map(|death| death.clone().unwrap_or_default());
    match death {
        Ok(reason) => reason,
        // The sender is a static: it is never dropped.
        Err(_) => std::future::pending().await,
    }
}

/// The context of a long-lived Kafka producer: a fatal error (librdkafka
/// gave up on it: fenced by a newer instance, or an idempotence guarantee
/// it can no longer keep) marks the process dead, since every later send
/// fails.
#[derive(Debug, Default, Clone, Copy)]
pub struct LivenessContext;

impl ClientContext for LivenessContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        client_log("producer", level, facility, message);
    }
}

/// A producer made with [`LivenessContext`].
pub type WatchedProducer = FutureProducer<LivenessContext>;

/// What a client context does with a line librdkafka logs: passes it on as
/// rdkafka's default does, and marks the process dead on a fatal error.
///
/// librdkafka logs each client's first fatal error once, at `LOG_EMERG`
/// with the facility `FATAL`, whenever error events are enabled (rdkafka
/// always enables them). That line is the one place a context learns of
/// it: the error event rdkafka hands to `ClientContext::error` carries the
/// underlying code (say `OutOfOrderSequenceNumber`) without saying it was
/// fatal.
pub fn client_log(client: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    if matches!(level, RDKafkaLogLevel::Emerg) && facility == "FATAL" {
        mark_dead(format!("the Kafka {client} hit a fatal error ({message})"));
    }
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", "librdkafka: {facility} {message}");
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", "librdkafka: {facility} {message}");
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", "librdkafka: {facility} {message}");
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", "librdkafka: {facility} {message}");
        }
    }
}
