//! Webhooks on the audit trail: every delivery to `/v1/webhooks/{source}`
//! is recorded. An accepted one is recorded in the Kafka transaction that
//! takes its event in (both or neither: a sender that retries a 503 is
//! answered from scratch, and Stripe's and Sluice's retries are signed
//! anew, so nothing may be on Kafka when the answer is not 202); its
//! retries, answered from the first answer, produce nothing, record
//! included. A refused or failed one is recorded on its own, best effort.
//! What the caller chose (the source in the path, a delivery id header) is
//! kept printable and short: the trail is read in terminals.

use axum::response::Response;
use sluice_contracts::types::{AuditAction, AuditRecord};
use sluice_kafka::{AuditLog, ReplyError};

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

/// Records `response`, the answer to a delivery from `source` (with its
/// delivery id once its signature was verified), unless it was accepted
/// (recorded with its event), and passes it on.
pub async fn refused(
    audit: &AuditLog,
    source: &str,
    delivery: Option<&str>,
    response: Response,
) -> Response {
    let status = response.status();
    if status.is_success() {
        return response;
    }
    let outcome = if status.is_server_error() {
        format!("FAILED {}", status.as_u16())
    } else {
        format!("REFUSED {}", status.as_u16())
    };
    let record = AuditRecord {
        detail: delivery.map(delivery_detail),
        ..entry(audit, AuditAction::WebhookRefused, source, outcome)
    };
    if let Err(err) = audit.record(&record, None).await {
        tracing::warn!(error = %err, "a refused webhook not recorded on the audit trail");
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
