//! Webhooks on the audit trail: every delivery to `/v1/webhooks/{source}`,
//! accepted or refused, is recorded with its answer. An accepted one is
//! answered 202 only once its record is on Kafka; when the record cannot be
//! written the sender is told to retry, and the retry (answered from the
//! delivery's first answer, producing nothing again) is recorded then.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_contracts::types::AuditAction;
use sluice_kafka::AuditLog;

/// Longest source name a record keeps: the path segment is the caller's.
const SOURCE_CHARS: usize = 64;

/// `response`, the answer to a delivery from `source` (with its delivery id
/// once its signature was verified), after it is recorded.
pub async fn audited(
    audit: &AuditLog,
    source: &str,
    delivery: Option<&str>,
    response: Response,
) -> Response {
    let status = response.status();
    let (action, outcome) = if status.is_success() {
        (
            AuditAction::WebhookAccepted,
            format!("ACCEPTED {}", status.as_u16()),
        )
    } else {
        (
            AuditAction::WebhookRefused,
            format!("REFUSED {}", status.as_u16()),
        )
    };
    let source: String = source.chars().take(SOURCE_CHARS).collect();
    let mut record = audit.entry(action, format!("webhook/{source}"), outcome);
    record.detail = delivery.map(|delivery| format!("delivery {delivery}"));
    match audit.record(&record, None).await {
        Ok(()) => response,
        Err(err) if status.is_success() => {
            tracing::error!(error = %err, "an accepted webhook not recorded on the audit trail");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                Json(json!({
                    "error": "the delivery is taken but its audit record is not written; retry it as it was (it is not taken twice)"
                })),
            )
                .into_response()
        }
        Err(err) => {
            tracing::warn!(error = %err, "a refused webhook not recorded on the audit trail");
            response
        }
    }
}
