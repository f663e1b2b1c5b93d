//! The consumer loop's handler: OrderPlaced starts a saga; an ErpResult or a
//! SheetRowResult carrying a saga step is that step's reply. Results no saga
//! asked for, and the orders' other events, are passed over.

use std::sync::Arc;

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sluice_avro::{AvroCodec, CodecError};
use sluice_contracts::types::{
    DeadLetterClass, ErpResult, OrderEvent, OrderPayload, SheetRowResult,
};
use sluice_kafka::{Handler, HandlerError, Owed};
use sluice_resilience::{Classified, ErrorClass};

use crate::definition::Saga;
use crate::fulfilment::Order;
use crate::replies::{self, ReplyError};
use crate::store::{ReplyEffect, Store, StoreError};

/// Why a message was not handled (this time).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The message has no value.
    #[error("the message has no value")]
    Empty,
    /// Not the topic's contract.
    #[error("decoding: {0}")]
    Decode(#[from] CodecError),
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
            Self::Store(StoreError::Database { .. }) => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }
}

impl HandlerError for HandleError {
    fn dead_letter_class(&self) -> DeadLetterClass {
        match self {
            Self::Empty | Self::Decode(_) => DeadLetterClass::Decode,
            _ => DeadLetterClass::Validation,
        }
    }
}

/// The topics the handler reads.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Orders' events: OrderPlaced starts a saga.
    pub orders: String,
    /// erp-sink's results.
    pub erp_results: String,
    /// sheets-sink's results.
    pub sheet_results: String,
}

impl Topics {
    /// Every topic the orchestrator consumes.
    pub fn inputs(&self) -> Vec<String> {
        vec![
            self.orders.clone(),
            self.erp_results.clone(),
            self.sheet_results.clone(),
        ]
    }
}

/// Drives order fulfilment sagas from Kafka.
pub struct SagaHandler {
    /// The saga.
    pub saga: Arc<Saga<Order>>,
    /// Its state.
    pub store: Store,
    /// Decodes events and results.
    pub codec: AvroCodec,
    /// What it reads.
    pub topics: Topics,
}

impl SagaHandler {
    /// Drives `saga`, kept in `store`, from what `topics` names.
    pub fn new(saga: Arc<Saga<Order>>, store: Store, codec: AvroCodec, topics: Topics) -> Self {
        Self {
            saga,
            store,
            codec,
            topics,
        }
    }
}

impl Handler for SagaHandler {
    type Error = HandleError;

    /// Its effects are in Postgres (the outbox sends its commands): it
    /// owes Kafka nothing.
    async fn handle(&self, message: &OwnedMessage) -> Result<Owed, HandleError> {
        let bytes = message.payload().ok_or(HandleError::Empty)?;
        let topic = message.topic();
        let trace: Vec<(String, String)> =
            sluice_telemetry::outgoing_trace_headers(&tracing::Span::current(), message)
                .into_iter()
                .map(|(key, value)| (key, String::from_utf8_lossy(&value).into_owned()))
                .collect();
        let reply = if topic == self.topics.orders {
            let event: OrderEvent = self.codec.decode(bytes).await?;
            if let OrderPayload::OrderPlaced(placed) = &event.payload {
                let order = Order::placed(&event, placed);
                let started = self
                    .store
                    .start(&self.saga, order.saga_id(), &order.order_id, &order, &trace)
                    .await?;
                tracing::debug!(order = order.order_id, started, "OrderPlaced");
            }
            return Ok(Owed::nothing());
        } else if topic == self.topics.erp_results {
            replies::from_erp(&self.codec.decode::<ErpResult>(bytes).await?)?
        } else if topic == self.topics.sheet_results {
            replies::from_sheet(&self.codec.decode::<SheetRowResult>(bytes).await?)?
        } else {
            return Err(HandleError::Topic(topic.to_owned()));
        };
        let Some(reply) = reply else {
            return Ok(Owed::nothing());
        };
        let effect = self.store.reply(&self.saga, &reply, &trace).await?;
        if effect == ReplyEffect::Ignored {
            tracing::debug!(saga_id = %reply.saga_id, step = reply.step, "duplicate or late reply ignored");
        }
        Ok(Owed::nothing())
    }
}
