//! The audit trail's record: AuditRecord.

use serde::{Deserialize, Serialize};

/// `dev.sluice.audit.AuditAction`: what Sluice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditAction {
    /// An action this reader does not know (written by a newer service).
    Unknown,
    /// A command applied to, or refused by, the ERP.
    ErpWrite,
    /// A row upsert applied to, or refused by, Google Sheets.
    SheetRowWrite,
    /// A webhook request taken in.
    WebhookAccepted,
    /// A webhook request refused.
    WebhookRefused,
    /// A dead letter put back on its topic.
    DlqReplay,
}

impl AuditAction {
    /// Every action a service writes (`Unknown` is only ever read).
    pub const WRITTEN: [Self; 5] = [
        Self::ErpWrite,
        Self::SheetRowWrite,
        Self::WebhookAccepted,
        Self::WebhookRefused,
        Self::DlqReplay,
    ];

    /// The symbol, as in the schema.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::ErpWrite => "ERP_WRITE",
            Self::SheetRowWrite => "SHEET_ROW_WRITE",
            Self::WebhookAccepted => "WEBHOOK_ACCEPTED",
            Self::WebhookRefused => "WEBHOOK_REFUSED",
            Self::DlqReplay => "DLQ_REPLAY",
        }
    }
}

/// `dev.sluice.audit.AuditRecord` (schemas/audit/AuditRecord.avsc): one
/// thing Sluice did to or for the outside world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Id of this record.
    pub audit_id: String,
    /// When it happened, ms since the epoch.
    pub recorded_at: i64,
    /// What was done.
    pub action: AuditAction,
    /// The program that did it.
    pub service: String,
    /// Who did it: the instance, or the operator of a replay.
    pub actor: String,
    /// What it was done to; also the Kafka key.
    pub subject: String,
    /// How it ended.
    pub outcome: String,
    /// The command applied, for a write.
    pub command_id: Option<String>,
    /// The domain event behind it.
    pub source_event_id: Option<String>,
    /// The flow it belongs to.
    pub correlation_id: Option<String>,
    /// The trace it was done in.
    pub trace_id: Option<String>,
    /// What was written in the external system.
    pub record_id: Option<String>,
    /// Why it was refused, or other context.
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::round_trip;

    #[test]
    fn every_written_action_round_trips() {
        for action in AuditAction::WRITTEN {
            round_trip(
                "audit.v1",
                &AuditRecord {
                    audit_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e11".into(),
                    recorded_at: 1,
                    action,
                    service: "erp-sink".into(),
                    actor: "erp-sink@pod-1".into(),
                    subject: "sale.order/order-1".into(),
                    outcome: "APPLIED".into(),
                    command_id: Some("0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e12".into()),
                    source_event_id: None,
                    correlation_id: Some("order-1".into()),
                    trace_id: None,
                    record_id: Some("42".into()),
                    detail: None,
                },
            );
        }
    }

    #[test]
    fn symbols_are_the_schemas() {
        let catalog = crate::Catalog::embedded().unwrap();
        let json = catalog.topic("audit.v1").unwrap().value_schema_json();
        for action in AuditAction::WRITTEN {
            assert!(
                json.contains(&format!("\"{}\"", action.symbol())),
                "{action:?}"
            );
        }
    }
}
