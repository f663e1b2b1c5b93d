//! The audit trail's record: AuditRecord.

use serde::{Deserialize, Serialize};

/// `dev.sluice.audit.AuditAction`: what Sluice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditAction {
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
    /// An action this reader does not know (written by a newer service):
    /// any symbol not above. Last, as serde wants it; written by name, so
    /// the schema's order (UNKNOWN first) is kept.
    #[serde(other)]
    Unknown,
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
    /// The rows of a write of many, each with its own command and trace.
    pub rows: Option<Vec<AuditRow>>,
}

/// `dev.sluice.audit.AuditRow`: one of the rows a write of many carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    /// The row: `spreadsheet_id/sheet/row_key`.
    pub subject: String,
    /// The command that asked for it.
    pub command_id: Option<String>,
    /// The domain event behind it.
    pub source_event_id: Option<String>,
    /// The flow it belongs to.
    pub correlation_id: Option<String>,
    /// The trace of its command.
    pub trace_id: Option<String>,
}

impl AuditRecord {
    /// The record as one entry per thing acted on: a write of many rows as
    /// an entry per row (the request's id, time, outcome and actor, the
    /// row's subject, command, event, flow and trace, and which row of how
    /// many it was), any other as itself.
    pub fn entries(mut self) -> Vec<AuditRecord> {
        let rows = self.rows.take().unwrap_or_default();
        if rows.is_empty() {
            return vec![self];
        }
        let count = rows.len();
        rows.into_iter()
            .enumerate()
            .map(|(n, row)| AuditRecord {
                subject: row.subject,
                command_id: row.command_id,
                source_event_id: row.source_event_id,
                correlation_id: row.correlation_id,
                trace_id: row.trace_id,
                detail: Some(match &self.detail {
                    Some(detail) => format!("{detail}; row {} of {count} recorded together", n + 1),
                    None => format!("row {} of {count} recorded together", n + 1),
                }),
                ..self.clone()
            })
            .collect()
    }
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
                    rows: None,
                },
            );
        }
    }

    fn row(key: &str) -> AuditRow {
        AuditRow {
            subject: format!("s1/Orders/{key}"),
            command_id: Some(format!("c-{key}")),
            source_event_id: Some(format!("e-{key}")),
            correlation_id: None,
            trace_id: Some(format!("t-{key}")),
        }
    }

    fn batch(rows: Option<Vec<AuditRow>>) -> AuditRecord {
        AuditRecord {
            audit_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e11".into(),
            recorded_at: 7,
            action: AuditAction::SheetRowWrite,
            service: "sheets-sink".into(),
            actor: "sheets-sink@pod-1".into(),
            subject: "s1".into(),
            outcome: "APPLIED".into(),
            command_id: None,
            source_event_id: None,
            correlation_id: None,
            trace_id: Some("batch".into()),
            record_id: None,
            detail: None,
            rows,
        }
    }

    #[test]
    fn a_write_of_many_rows_round_trips_and_reads_as_an_entry_per_row() {
        let record = batch(Some(vec![row("o-1"), row("o-2")]));
        round_trip("audit.v1", &record);
        let entries = record.entries();
        assert_eq!(entries.len(), 2);
        for (entry, key) in entries.iter().zip(["o-1", "o-2"]) {
            assert_eq!(entry.subject, format!("s1/Orders/{key}"));
            assert_eq!(entry.command_id, Some(format!("c-{key}")));
            assert_eq!(entry.source_event_id, Some(format!("e-{key}")));
            assert_eq!(entry.trace_id, Some(format!("t-{key}")));
            assert_eq!(entry.rows, None);
            assert!(
                entry
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.ends_with("of 2 recorded together"))
            );
            assert_eq!(
                (
                    entry.recorded_at,
                    entry.outcome.as_str(),
                    entry.actor.as_str()
                ),
                (7, "APPLIED", "sheets-sink@pod-1")
            );
        }
        // Without rows (or with none) a record is its own entry.
        assert_eq!(batch(None).entries(), vec![batch(None)]);
        assert_eq!(batch(Some(Vec::new())).entries(), vec![batch(None)]);
    }

    /// A trail written by a newer service, whose schema has an action this
    /// one lacks, still reads: the action as Unknown, the rest as written.
    #[test]
    fn an_action_added_later_reads_as_unknown() {
        use apache_avro::Schema;
        use apache_avro::reader::datum::GenericDatumReader;
        use apache_avro::writer::datum::GenericDatumWriter;
        let catalog = crate::Catalog::embedded().unwrap();
        let json = catalog.topic("audit.v1").unwrap().value_schema_json();
        let newer = json.replace("\"DLQ_REPLAY\"]", "\"DLQ_REPLAY\", \"LATER_ACTION\"]");
        assert_ne!(newer, json, "the symbols are where this test adds one");
        let newer = Schema::parse_str(&newer).unwrap();
        let mut record = batch(None);
        record.action = AuditAction::DlqReplay;
        let mut bytes = GenericDatumWriter::builder(&newer)
            .build()
            .unwrap()
            .write_ser_to_vec(&record)
            .unwrap();
        // The action follows the 36-character audit_id (a length byte and
        // the characters) and recorded_at 7 (one byte): DLQ_REPLAY is
        // symbol 5 (zigzag 0x0a), LATER_ACTION symbol 6 (0x0c).
        assert_eq!(bytes[38], 0x0a);
        bytes[38] = 0x0c;
        let read: AuditRecord = GenericDatumReader::builder(&newer)
            .build()
            .unwrap()
            .read_deser(&mut &bytes[..])
            .unwrap();
        assert_eq!(read.action, AuditAction::Unknown);
        assert_eq!(
            read,
            AuditRecord {
                action: AuditAction::Unknown,
                ..record
            }
        );
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
