//! The saga DSL: a saga is a list of steps, each a command sent to a topic,
//! completed by the reply to it, bounded by a timeout and a retry budget,
//! and undone by a compensating command; and the messages that announce how
//! the saga ended.
//!
//! ```text
//! Saga::new("order-fulfilment", confirmed, rejected)
//!     .step(Step::new("reserve-in-erp", reserve).compensate_with(cancel).timeout(30s).retries(2))
//!     .step(Step::new("record-in-sheet", record).compensate_with(mark_cancelled))
//! ```
//!
//! A deployment writes it as a file ([`crate::file`]); a message a step
//! cannot make from the saga's data (a value its event lacks) is an error
//! the engine handles, not a panic.

use std::time::Duration;

use apache_avro::types::Value;
use sluice_contracts::Topic;
use sluice_contracts::types::{ErpCommand, SagaStep, SheetRowUpsert};
use uuid::Uuid;

use crate::engine::Reply;

/// A message the saga sends: a command, or the event that ends it.
#[derive(Debug, Clone)]
pub struct Message {
    /// Destination topic.
    pub topic: String,
    /// Kafka key (the key the topic map names).
    pub key: String,
    /// The value, encoded with the topic's schema.
    pub value: Payload,
}

/// The contract types a saga sends.
#[derive(Debug, Clone)]
pub enum Payload {
    /// To erp-sink.
    Erp(ErpCommand),
    /// To sheets-sink.
    Sheet(SheetRowUpsert),
    /// A domain event (the saga's outcome).
    Event(Event),
}

/// A domain event of the saga's aggregate, as its contract has it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The aggregate's event contract, which encodes it.
    pub contract: Topic,
    /// The event record.
    pub value: Value,
    /// Its id (also a header).
    pub event_id: String,
    /// Its type (also a header).
    pub event_type: String,
}

/// Why a saga is being compensated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// The step that failed or timed out.
    pub step: String,
    /// What happened.
    pub reason: String,
}

/// Whether a command does a step or undoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The step's command.
    Forward,
    /// Its compensation.
    Compensate,
}

/// What a step's command is built from.
#[derive(Debug)]
pub struct Context<'a, D> {
    /// The saga instance.
    pub saga_id: Uuid,
    /// Its data.
    pub data: &'a D,
    /// The command's idempotency key: the same for every attempt.
    pub command_id: Uuid,
    /// Carried in the command and copied into its reply.
    pub step: SagaStep,
    /// Set while compensating.
    pub failure: Option<&'a Failure>,
}

/// The command id of a step in a direction: stable across attempts and
/// replicas, so a resend is deduplicated by the sink.
pub fn command_id(saga_id: Uuid, step: &str, direction: Direction) -> Uuid {
    let suffix = match direction {
        Direction::Forward => "do",
        Direction::Compensate => "undo",
    };
    Uuid::new_v5(&saga_id, format!("{step}/{suffix}").as_bytes())
}

/// A message, or why it could not be made from the saga's data.
pub type Made = Result<Message, String>;

type Build<D> = Box<dyn Fn(&Context<'_, D>) -> Made + Send + Sync>;
type Announce<D> = Box<dyn Fn(Uuid, &D, Option<&Failure>) -> Made + Send + Sync>;
type Correlation<D> = Box<dyn Fn(&D) -> Option<String> + Send + Sync>;

/// One step.
pub struct Step<D> {
    /// Its name (in replies, the step log and metrics).
    pub name: String,
    pub(crate) command: Build<D>,
    pub(crate) compensation: Option<Build<D>>,
    /// How long to wait for the reply before sending again.
    pub timeout: Duration,
    /// How many times the command is sent again after a timeout before the
    /// step counts as failed.
    pub retries: u32,
}

impl<D> Step<D> {
    /// A step sending what `command` builds; 30 s timeout, no retries.
    pub fn new(
        name: &str,
        command: impl Fn(&Context<'_, D>) -> Made + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.to_owned(),
            command: Box::new(command),
            compensation: None,
            timeout: Duration::from_secs(30),
            retries: 0,
        }
    }

    /// Undone by what `compensation` builds once a later step fails (or
    /// this one times out: its command may still be applied).
    #[must_use]
    pub fn compensate_with(
        mut self,
        compensation: impl Fn(&Context<'_, D>) -> Made + Send + Sync + 'static,
    ) -> Self {
        self.compensation = Some(Box::new(compensation));
        self
    }

    /// Waits this long for each reply (compensations too).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the command again this many times after timeouts.
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Whether the step can be undone.
    pub fn compensable(&self) -> bool {
        self.compensation.is_some()
    }
}

/// A saga type.
pub struct Saga<D> {
    /// Its name (saga_type in Postgres, a metrics label).
    pub name: String,
    pub(crate) steps: Vec<Step<D>>,
    pub(crate) completed: Announce<D>,
    pub(crate) rejected: Announce<D>,
    correlation: Option<Correlation<D>>,
}

impl<D> Saga<D> {
    /// A saga announcing its end with what `completed` (every step done) or
    /// `rejected` (compensated after a failure) builds.
    pub fn new(
        name: &str,
        completed: impl Fn(Uuid, &D, Option<&Failure>) -> Made + Send + Sync + 'static,
        rejected: impl Fn(Uuid, &D, Option<&Failure>) -> Made + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.to_owned(),
            steps: Vec::new(),
            completed: Box::new(completed),
            rejected: Box::new(rejected),
            correlation: None,
        }
    }

    /// Names the flow each saga is part of, from its data: every message
    /// it sends carries it (a `sluice.correlation_id` header), whatever
    /// started the step — a reply, a timeout, or a start from an event that
    /// had the id only in its envelope.
    #[must_use]
    pub fn correlated_by(
        mut self,
        correlation: impl Fn(&D) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.correlation = Some(Box::new(correlation));
        self
    }

    /// The correlation id of a saga with `data`.
    pub fn correlation_of(&self, data: &D) -> Option<String> {
        self.correlation.as_ref().and_then(|of| of(data))
    }

    /// Adds the next step.
    #[must_use]
    pub fn step(mut self, step: Step<D>) -> Self {
        self.steps.push(step);
        self
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step<D>] {
        &self.steps
    }

    /// The index of the step called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|step| step.name == name)
    }

    /// Whether `reply` can answer a command of this saga type: its step is
    /// one of ours and its command id the one its saga's step sends. A
    /// stray id fails; another saga type's step of the same name passes.
    pub fn sent(&self, reply: &Reply) -> bool {
        self.position(&reply.step).is_some()
            && [Direction::Forward, Direction::Compensate]
                .into_iter()
                .any(|direction| {
                    command_id(reply.saga_id, &reply.step, direction) == reply.command_id
                })
    }
}
