//! Webhooks on the audit trail: every delivery to `/v1/webhooks/{source}`
//! is recorded. An accepted one is recorded in the Kafka transaction that
//! takes its event in (both or neither: a sender that retries a 503 is
//! answered from scratch, and Stripe's and Sluice's retries are signed
//! anew, so nothing may be on Kafka when the answer is not 202); its
//! retries, answered from the first answer, produce nothing, record
//! included. A refused or failed one is recorded on its own, best effort;
//! one without a valid signature within a budget: those beyond it are
//! counted, and the next record says how many. What the caller chose (the
//! source in the path, a delivery id header) is kept printable and short:
//! the trail is read in terminals.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::response::Response;
use sluice_contracts::types::{AuditAction, AuditRecord};
use sluice_kafka::{AuditLog, ReplyError};
use sluice_resilience::{InvalidConfig, LimiterConfig, RateLimiter};

use crate::event::Prepared;
use crate::publish::Outgoing;

/// Longest source name a record keeps: the path segment is the caller's.
const SOURCE_CHARS: usize = 64;
/// Longest delivery id a record keeps: some schemes take it from a header.
const DELIVERY_CHARS: usize = 128;

/// At most `max` characters of `text`, control characters left out.
fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn entry(audit: &AuditLog, action: AuditAction, source: &str, outcome: String) -> AuditRecord {
    let subject = format!("webhook/{}", printable(source, SOURCE_CHARS));
    audit.entry(action, subject, outcome)
}

fn delivery_detail(delivery: &str) -> String {
    format!("delivery {}", printable(delivery, DELIVERY_CHARS))
}

/// The record of the delivery `delivery` from `source` accepted as
/// `event`, to be produced with it.
pub async fn accepted(
    audit: &AuditLog,
    source: &str,
    delivery: &str,
    event: &Prepared,
) -> Result<Outgoing, ReplyError> {
    let record = AuditRecord {
        source_event_id: Some(event.event_id.clone()),
        correlation_id: event.correlation_id.clone(),
        detail: Some(delivery_detail(delivery)),
        ..entry(
            audit,
            AuditAction::WebhookAccepted,
            source,
            "ACCEPTED 202".into(),
        )
    };
    let (topic, value) = audit.encoded(&record).await?;
    Ok(Outgoing {
        topic,
        key: record.subject,
        value,
        headers: Vec::new(),
    })
}

/// Counter: refused webhook deliveries left off the audit trail, over its
/// budget.
const UNRECORDED: &str = "sluice_ingest_refusals_unrecorded_total";

/// How many refused deliveries the trail takes, and how many it left off
/// since it last took one. One budget for every source: the source is the
/// caller's choice, so a bucket each would be one more thing it could
/// multiply.
pub struct RefusalBudget {
    limiter: RateLimiter,
    unrecorded: AtomicU64,
}

impl RefusalBudget {
    /// A budget of `config`.
    pub fn new(config: LimiterConfig) -> Result<Self, InvalidConfig> {
        Ok(Self {
            limiter: RateLimiter::new("audit-refusals", config)?,
            unrecorded: AtomicU64::new(0),
        })
    }

    /// Whether a refusal is recorded now; if so, how many were not since
    /// the last one that was.
    fn take(&self) -> Option<u64> {
        match self.limiter.try_acquire("refusals") {
            Ok(()) => Some(self.unrecorded.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.left_off(1);
                None
            }
        }
    }

    /// `count` refusals for the next record to name, one of them newly
    /// left off (the metric's one; the others it counted before).
    fn left_off(&self, count: u64) {
        self.unrecorded.fetch_add(count, Ordering::Relaxed);
        metrics::counter!(UNRECORDED).increment(1);
    }
}

/// Records `response`, the answer to a delivery from `source` (with its
/// delivery id once its signature was verified), unless it was accepted
/// (recorded with its event), and passes it on. What comes with no valid
/// signature is recorded within `budget`: past it, only counted.
pub async fn refused(
    audit: &AuditLog,
    budget: &RefusalBudget,
    source: &str,
    delivery: Option<&str>,
    response: Response,
) -> Response {
    let status = response.status();
    if status.is_success() {
        return response;
    }
    // A verified sender is always recorded: a flood of forgeries must not
    // crowd its refusals and failures off the trail.
    let unrecorded = match delivery {
        Some(_) => 0,
        None => match budget.take() {
            Some(unrecorded) => unrecorded,
            None => return response,
        },
    };
    let outcome = if status.is_server_error() {
        format!("FAILED {}", status.as_u16())
    } else {
        format!("REFUSED {}", status.as_u16())
    };
    let left_off = (unrecorded > 0).then(|| {
        format!("{unrecorded} unsigned deliveries from any source refused before this one, not recorded (over --audit-refused-per-second)")
    });
    let detail = match (delivery.map(delivery_detail), left_off) {
        (Some(delivery), Some(left_off)) => Some(format!("{delivery}; {left_off}")),
        (delivery, left_off) => delivery.or(left_off),
    };
    let record = AuditRecord {
        detail,
        ..entry(audit, AuditAction::WebhookRefused, source, outcome)
    };
    if let Err(err) = audit.record(&record, None).await {
        tracing::warn!(error = %err, "a refused webhook not recorded on the audit trail");
        // Neither it nor the ones it was to name are lost to the count.
        if delivery.is_none() {
            budget.left_off(unrecorded + 1);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_caller_chose_is_kept_printable_and_short() {
        assert_eq!(printable("shop\u{1b}[31m\n", 64), "shop[31m");
        assert_eq!(
            printable(&"x".repeat(500), DELIVERY_CHARS).len(),
            DELIVERY_CHARS
        );
    }
}
