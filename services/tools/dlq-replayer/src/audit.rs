//! `audit`: the audit trail, queried — what Sluice wrote to the ERP and the
//! sheets (when, from which event, how it ended), the webhooks it took in or
//! refused, and the replays operators ran.

use serde_json::{Value, json};
use sluice_config::{Output, table};
use sluice_contracts::types::{AuditAction, AuditRecord};

use crate::filter::{When, parse_when};
use crate::render::time;

/// Which records to show.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditQuery {
    /// What was acted on: an ERP external_ref or row key (the last part of
    /// the subject), or the whole subject (sale.order/order-1).
    #[arg(long, value_name = "SUBJECT")]
    pub subject: Option<String>,
    /// Only this kind of action.
    #[arg(long, value_enum)]
    pub action: Option<Action>,
    /// Only records of this flow.
    #[arg(long, value_name = "ID")]
    pub correlation: Option<String>,
    /// Only records caused by this domain event.
    #[arg(long, value_name = "EVENT_ID")]
    pub event: Option<String>,
    /// Only those recorded at or after this time: RFC 3339, or a duration
    /// ago such as 2h.
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub since: Option<When>,
    /// At most this many, the newest.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// The kinds of action, as `--action` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// Commands applied to (or refused by) the ERP.
    ErpWrite,
    /// Row upserts applied to (or refused by) Google Sheets.
    SheetRowWrite,
    /// Webhook deliveries taken in.
    WebhookAccepted,
    /// Webhook deliveries refused.
    WebhookRefused,
    /// Dead letters replayed.
    DlqReplay,
}

impl Action {
    fn recorded(self) -> AuditAction {
        match self {
            Self::ErpWrite => AuditAction::ErpWrite,
            Self::SheetRowWrite => AuditAction::SheetRowWrite,
            Self::WebhookAccepted => AuditAction::WebhookAccepted,
            Self::WebhookRefused => AuditAction::WebhookRefused,
            Self::DlqReplay => AuditAction::DlqReplay,
        }
    }
}

impl AuditQuery {
    /// Whether `record` is one asked for, `now_ms` being now.
    pub fn matches(&self, record: &AuditRecord, now_ms: i64) -> bool {
        let subject = self.subject.as_deref().is_none_or(|wanted| {
            record.subject == wanted
                || record
                    .subject
                    .strip_suffix(wanted)
                    .is_some_and(|head| head.ends_with('/'))
        });
        subject
            && self.action.is_none_or(|a| a.recorded() == record.action)
            && self
                .correlation
                .as_deref()
                .is_none_or(|id| record.correlation_id.as_deref() == Some(id))
            && self
                .event
                .as_deref()
                .is_none_or(|id| record.source_event_id.as_deref() == Some(id))
            && self
                .since
                .is_none_or(|w| record.recorded_at >= w.millis(now_ms))
    }
}

fn record_json(record: &AuditRecord) -> Value {
    json!({
        "recorded_at": time(record.recorded_at),
        "action": record.action.symbol(),
        "subject": record.subject,
        "outcome": record.outcome,
        "service": record.service,
        "actor": record.actor,
        "command_id": record.command_id,
        "source_event_id": record.source_event_id,
        "correlation_id": record.correlation_id,
        "trace_id": record.trace_id,
        "record_id": record.record_id,
        "detail": record.detail,
        "audit_id": record.audit_id,
    })
}

/// The records, oldest first.
pub fn render(records: &[AuditRecord], output: Output) -> String {
    match output {
        Output::Json => records
            .iter()
            .map(|record| format!("{}\n", record_json(record)))
            .collect(),
        Output::Table => {
            let mut out = table(&[
                "RECORDED",
                "ACTION",
                "SUBJECT",
                "OUTCOME",
                "RECORD",
                "SOURCE EVENT",
                "ACTOR",
                "TRACE",
                "DETAIL",
            ]);
            let text = |value: &Option<String>| value.clone().unwrap_or_default();
            for record in records {
                out.add_row(vec![
                    time(record.recorded_at),
                    record.action.symbol().to_owned(),
                    record.subject.clone(),
                    record.outcome.clone(),
                    text(&record.record_id),
                    text(&record.source_event_id),
                    record.actor.clone(),
                    text(&record.trace_id),
                    text(&record.detail),
                ]);
            }
            format!("{out}\n{} audit entries\n", records.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(subject: &str) -> AuditRecord {
        AuditRecord {
            audit_id: "a".into(),
            recorded_at: 1_000,
            action: AuditAction::ErpWrite,
            service: "erp-sink".into(),
            actor: "erp-sink@pod".into(),
            subject: subject.into(),
            outcome: "APPLIED".into(),
            command_id: None,
            source_event_id: Some("e-1".into()),
            correlation_id: Some("c-1".into()),
            trace_id: None,
            record_id: Some("7".into()),
            detail: None,
            rows: None,
        }
    }

    fn query(subject: Option<&str>) -> AuditQuery {
        AuditQuery {
            subject: subject.map(str::to_owned),
            action: None,
            correlation: None,
            event: None,
            since: None,
            limit: None,
        }
    }

    #[test]
    fn a_subject_matches_whole_or_by_its_last_parts_only() {
        let order = record("sale.order/order-1");
        assert!(query(Some("order-1")).matches(&order, 0));
        assert!(query(Some("sale.order/order-1")).matches(&order, 0));
        assert!(query(None).matches(&order, 0));
        // Not a mere suffix: order-11 is another order.
        assert!(!query(Some("der-1")).matches(&order, 0));
        assert!(!query(Some("order-11")).matches(&order, 0));
    }

    #[test]
    fn every_filter_narrows() {
        let order = record("sale.order/order-1");
        let mut q = query(None);
        q.action = Some(Action::SheetRowWrite);
        assert!(!q.matches(&order, 0));
        q.action = Some(Action::ErpWrite);
        q.correlation = Some("c-2".into());
        assert!(!q.matches(&order, 0));
        q.correlation = Some("c-1".into());
        q.event = Some("e-1".into());
        assert!(q.matches(&order, 0));
        q.since = Some(When::At(2_000));
        assert!(!q.matches(&order, 0));
    }
}
