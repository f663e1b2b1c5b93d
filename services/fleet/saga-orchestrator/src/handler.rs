//! The consumer loop's handler: the saga's start event (OrderPlaced) starts
//! a saga; an ErpResult or a SheetRowResult carrying a saga step is that
//! step's reply. Results no saga asked for, and the aggregate's other
//! events, are passed over.

use std::sync::Arc;

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sluice_avro::{AvroCodec, CodecError};
use sluice_contracts::types::{DeadLetterClass, ErpResult, SheetRowResult};
use sluice_kafka::{Handler, HandlerError, Owed};
use sluice_resilience::{Classified, ErrorClass};
use tracing::Span;

use crate::file::FileSaga;
use crate::replies::{self, ReplyError};
use crate::started::{self, Started};
use crate::store::{ReplyEffect, Start, Store, StoreError, Traced};

/// Why a message was not handled (this time).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The message has no value.
    #[error("the message has no value")]
    Empty,
    /// Not the topic's contract.
    #[error("decoding: {0}")]
    Decode(#[from] CodecError),
    /// A start event without what every event has.
    #[error("the start event: {0}")]
    Event(String),
    /// A result whose saga step does not parse.
    #[error("reply: {0}")]
    Reply(#[from] ReplyError),
    /// Postgres, or an unknown saga.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A topic the orchestrator was not set up to read.
    #[error("unexpected topic {0}")]
    Topic(String),
}

impl Classified for HandleError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Decode(codec) | Self::Store(StoreError::Encode { source: codec, .. })
                if codec.holds() =>
            {
                ErrorClass::Pause
            }
            // The batch is split at once, and the message that carries the
            // refused value is dead-lettered alone.
            Self::Store(store) if store.is_refused() => ErrorClass::Permanent,
            Self::Store(StoreError::Database { .. }) => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }
}

impl HandlerError for HandleError {
    fn dead_letter_class(&self) -> DeadLetterClass {
        match self {
            Self::Empty | Self::Decode(_) | Self::Event(_) => DeadLetterClass::Decode,
            _ => DeadLetterClass::Validation,
        }
    }
}

/// The topics the handler reads.
#[derive(Debug, Clone)]
pub struct Topics {
    /// The saga's aggregate's events: its start event starts a saga.
    pub events: String,
    /// erp-sink's results.
    pub erp_results: String,
    /// sheets-sink's results.
    pub sheet_results: String,
}

impl Topics {
    /// Every topic the orchestrator consumes.
    pub fn inputs(&self) -> Vec<String> {
        vec![
            self.events.clone(),
            self.erp_results.clone(),
            self.sheet_results.clone(),
        ]
    }
}

/// Drives sagas from Kafka.
pub struct SagaHandler {
    /// The saga.
    pub saga: Arc<FileSaga>,
    /// Its state.
    pub store: Store,
    /// Decodes events and results.
    pub codec: AvroCodec,
    /// What it reads.
    pub topics: Topics,
}

impl SagaHandler {
    /// Drives `saga`, kept in `store`, from what `topics` names.
    pub fn new(saga: Arc<FileSaga>, store: Store, codec: AvroCodec, topics: Topics) -> Self {
        Self {
            saga,
            store,
            codec,
            topics,
        }
    }
}

/// What a message asks of the sagas.
enum Input {
    /// Start one.
    Start(Start<Started>),
    /// Move one.
    Reply(Traced),
    /// Nothing: another event of the aggregate, a result no saga asked for.
    Nothing,
}

impl SagaHandler {
    /// What `message` asks; its saga's messages carry the trace context
    /// of `span` (the message's own).
    async fn read(&self, message: &OwnedMessage, span: &Span) -> Result<Input, HandleError> {
        let bytes = message.payload().ok_or(HandleError::Empty)?;
        let topic = message.topic();
        let trace = || -> Vec<(String, String)> {
            sluice_telemetry::outgoing_trace_headers(span, message)
                .into_iter()
                .map(|(key, value)| (key, String::from_utf8_lossy(&value).into_owned()))
                .collect()
        };
        let reply = if topic == self.topics.events {
            let event = self.codec.decode_value(bytes).await?;
            let definition = &self.saga;
            if started::event_type(&event).as_deref() != Some(definition.starts_on.as_str()) {
                return Ok(Input::Nothing);
            }
            let header = sluice_telemetry::correlation_id(message);
            let data =
                Started::of(&definition.aggregate, &event, header).map_err(HandleError::Event)?;
            return Ok(Input::Start(Start {
                saga_id: definition.saga_id(&data.aggregate_id),
                key: data.aggregate_id.clone(),
                data,
                trace: trace(),
            }));
        } else if topic == self.topics.erp_results {
            replies::from_erp(&self.codec.decode::<ErpResult>(bytes).await?)?
        } else if topic == self.topics.sheet_results {
            replies::from_sheet(&self.codec.decode::<SheetRowResult>(bytes).await?)?
        } else {
            return Err(HandleError::Topic(topic.to_owned()));
        };
        Ok(reply.map_or(Input::Nothing, |reply| {
            Input::Reply(Traced {
                reply,
                trace: trace(),
            })
        }))
    }
}

impl Handler for SagaHandler {
    type Error = HandleError;

    async fn handle(&self, message: &OwnedMessage) -> Result<Owed, HandleError> {
        self.handle_batch(std::slice::from_ref(message)).await
    }

    /// The batch's starts in one transaction and its replies in another
    /// (a partition's batch holds one topic's, so one of the two). Its
    /// effects are in Postgres (the outbox sends its commands): it owes
    /// Kafka nothing.
    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Result<Owed, HandleError> {
        let (mut starts, mut replies) = (Vec::new(), Vec::new());
        for message in messages {
            // A batch's span is its first message's: each message's
            // commands, and its log line, are in the message's own trace.
            let span = match messages {
                [_] => Span::current(),
                _ => sluice_telemetry::message_span(message),
            };
            match self.read(message, &span).await? {
                Input::Start(start) => starts.push((start, span)),
                Input::Reply(reply) => replies.push((reply, span)),
                Input::Nothing => {}
            }
        }
        let saga = &self.saga.saga;
        if !starts.is_empty() {
            let (starts, spans): (Vec<_>, Vec<_>) = starts.into_iter().unzip();
            let started = self.store.start(saga, &starts).await?;
            for ((start, span), started) in starts.iter().zip(spans).zip(started) {
                let _entered = span.entered();
                tracing::debug!(aggregate_id = start.key, started, "{}", self.saga.starts_on);
            }
        }
        if !replies.is_empty() {
            let (replies, spans): (Vec<_>, Vec<_>) = replies.into_iter().unzip();
            let effects = self.store.reply(saga, &replies).await?;
            for ((Traced { reply, .. }, span), effect) in replies.iter().zip(spans).zip(effects) {
                let _entered = span.entered();
                let (saga_id, step) = (reply.saga_id, &reply.step);
                match effect {
                    ReplyEffect::Applied => {}
                    ReplyEffect::Ignored => {
                        tracing::debug!(%saga_id, step, "duplicate or late reply ignored");
                    }
                    ReplyEffect::NotOurs => {
                        tracing::debug!(%saga_id, step, "another saga's reply passed over");
                    }
                }
            }
        }
        Ok(Owed::nothing())
    }
}
