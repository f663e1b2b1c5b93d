//! The audit trail: what a service did to or for the outside world, one
//! AuditRecord each on the audit topic, keyed by its subject. Written like
//! a reply — acknowledged by Kafka before the offset of the message that
//! caused it is stored — so a write that is done is recorded at least once
//! (a redelivered command is recorded again, as ALREADY_APPLIED).

use rdkafka::message::OwnedMessage;
use sluice_contracts::types::{AuditAction, AuditRecord};

use crate::{Owed, ReplyError, ReplyPublisher};

/// Records one program's actions, under its name and actor.
pub struct AuditLog {
    publisher: ReplyPublisher,
    service: &'static str,
    actor: String,
}

impl AuditLog {
    /// Records through `publisher` (on the audit topic) as `service`,
    /// done by `actor`.
    pub fn new(publisher: ReplyPublisher, service: &'static str, actor: String) -> Self {
        Self {
            publisher,
            service,
            actor,
        }
    }

    /// A record of `action` on `subject` that ended in `outcome`, now, in
    /// the current span's trace; the caller fills in what else it knows.
    pub fn entry(
        &self,
        action: AuditAction,
        subject: impl Into<String>,
        outcome: impl Into<String>,
    ) -> AuditRecord {
        AuditRecord {
            audit_id: uuid::Uuid::new_v4().to_string(),
            recorded_at: sluice_contracts::now_millis(),
            action,
            service: self.service.to_owned(),
            actor: self.actor.clone(),
            subject: subject.into(),
            outcome: outcome.into(),
            command_id: None,
            source_event_id: None,
            correlation_id: None,
            trace_id: sluice_telemetry::trace_id(&tracing::Span::current()),
            record_id: None,
            detail: None,
            rows: None,
        }
    }

    /// `record` encoded for the audit topic, and that topic: for a writer
    /// that records an act in the Kafka transaction that does it.
    pub async fn encoded(&self, record: &AuditRecord) -> Result<(String, Vec<u8>), ReplyError> {
        let value = self.publisher.encode(record).await?;
        Ok((self.publisher.topic().to_owned(), value))
    }

    /// Writes `record`, done while handling `cause` (whose trace and
    /// correlation it carries on), or in the current span without one.
    pub async fn record(
        &self,
        record: &AuditRecord,
        cause: Option<&OwnedMessage>,
    ) -> Result<(), ReplyError> {
        self.owe(record, cause).await?.send_now().await
    }

    /// `record` as [`Self::record`] writes it, owed to the consumer loop:
    /// on Kafka before the offset of the message being handled is stored.
    pub async fn owe(
        &self,
        record: &AuditRecord,
        cause: Option<&OwnedMessage>,
    ) -> Result<Owed, ReplyError> {
        self.publisher.owe(&record.subject, record, cause).await
    }
}
