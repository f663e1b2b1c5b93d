//! One event in, its commands out: the rules applied to a decoded event.

use std::collections::HashMap;

use apache_avro::types::Value;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sluice_avro::{AvroCodec, CodecError, event_contract};
use sluice_contracts::types::{Contract, DeadLetterClass, ScalarValue};
use sluice_kafka::{HandlerError, OutputRecord, Transformer};
use sluice_resilience::{Classified, ErrorClass};
use uuid::Uuid;

use sluice_mapping::build::{self, Command, Origin, listed};
use sluice_mapping::eval::{Lookups, Scope, field, holds, unwrap};
use sluice_mapping::rules::{FieldPath, Rule, Rules};

use crate::metrics::{FAILED, MATCHED, PRODUCED, describe_once};

/// Namespace of command ids (UUID v5 of `<event_id>/<rule id>`).
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_3c2e_9b4d_5e70_8f21_0c3d_4b5a_6978);

/// The id of the command `rule` makes from event `event_id`: the same on
/// every replay and redelivery, so sinks can deduplicate on it.
pub fn command_id(event_id: &str, rule: &str) -> String {
    Uuid::new_v5(&COMMAND_NAMESPACE, format!("{event_id}/{rule}").as_bytes()).to_string()
}

/// Where commands go.
#[derive(Debug, Clone)]
pub struct OutputTopics {
    /// SheetRowUpsert commands (`sheets.rows.v1`).
    pub sheets: String,
    /// ErpCommand commands (`erp.commands.v1`).
    pub erp: String,
}

/// Why an event was not mapped.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The message has no value.
    #[error("the message has no value")]
    Empty,
    /// The value is not Avro of a known schema (or the registry is down).
    #[error("decoding the event: {0}")]
    Decode(#[from] CodecError),
    /// The envelope lacks what every event has.
    #[error("event envelope: {0}")]
    Envelope(String),
    /// A rule could not map the event.
    #[error("rule {rule:?}: {reason}")]
    Mapping {
        /// The rule's id.
        rule: String,
        /// Which field and why.
        reason: String,
    },
    /// A command could not be encoded (its subject is missing, say).
    #[error("encoding the command of rule {rule:?}: {source}")]
    Encode {
        /// The rule's id.
        rule: String,
        /// The codec's error.
        source: CodecError,
    },
}

impl Classified for MapError {
    fn class(&self) -> ErrorClass {
        match self {
            // The registry being away is no reason to dead-letter an event:
            // hold the partition until it is back.
            Self::Decode(codec) | Self::Encode { source: codec, .. } if codec.holds() => {
                ErrorClass::Pause
            }
            _ => ErrorClass::Permanent,
        }
    }
}

impl HandlerError for MapError {
    fn dead_letter_class(&self) -> DeadLetterClass {
        match self {
            Self::Empty | Self::Decode(_) | Self::Envelope(_) => DeadLetterClass::Decode,
            Self::Mapping { .. } => DeadLetterClass::Mapping,
            Self::Encode { .. } => DeadLetterClass::Permanent,
        }
    }
}

/// Whether a decoded value is an event at all: a value in the wire format
/// may be any record of any subject (another team's, written to the wrong
/// topic); the reason names what it lacks and what it has.
fn is_event(value: &Value) -> Result<(), String> {
    let Value::Record(fields) = unwrap(value) else {
        return Err("the value is not an event: its schema is not a record".into());
    };
    let lacks = ["event_id", "event_type", "occurred_at"]
        .into_iter()
        .find(|wanted| !fields.iter().any(|(name, _)| name == wanted));
    match lacks {
        None => Ok(()),
        Some(wanted) => {
            let has: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
            Err(format!(
                "the value is not an event: it has no {wanted} (its fields: {})",
                has.join(", ")
            ))
        }
    }
}

/// The rules, ready to apply.
pub struct Mapper {
    /// Rules by (aggregate type, event type), in file order.
    rules: HashMap<(String, String), Vec<Rule>>,
    /// Aggregate type of each input topic.
    aggregates: HashMap<String, String>,
    lookups: Lookups,
    codec: AvroCodec,
    outputs: OutputTopics,
}

impl Mapper {
    /// A mapper of checked `rules`; `routes` names an aggregate's topic when
    /// it is not `<aggregate>.events.v1`.
    pub fn new(
        rules: Rules,
        routes: &HashMap<String, String>,
        codec: AvroCodec,
        outputs: OutputTopics,
    ) -> Self {
        describe_once();
        let mut by_event: HashMap<(String, String), Vec<Rule>> = HashMap::new();
        let mut aggregates = HashMap::new();
        for rule in rules.rules {
            let topic = routes
                .get(&rule.aggregate)
                .cloned()
                .unwrap_or_else(|| event_contract(&rule.aggregate));
            aggregates.insert(topic, rule.aggregate.clone());
            by_event
                .entry((rule.aggregate.clone(), rule.event_type.clone()))
                .or_default()
                .push(rule);
        }
        Self {
            rules: by_event,
            aggregates,
            lookups: rules.lookups,
            codec,
            outputs,
        }
    }

    /// The topics the rules read, sorted.
    pub fn input_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.aggregates.keys().cloned().collect();
        topics.sort();
        topics
    }

    async fn map(&self, message: &OwnedMessage) -> Result<Vec<OutputRecord>, MapError> {
        let Some(aggregate) = self.aggregates.get(message.topic()) else {
            return Ok(Vec::new());
        };
        let bytes = message.payload().ok_or(MapError::Empty)?;
        let event = self.codec.decode_value(bytes).await?;
        is_event(&event).map_err(MapError::Envelope)?;
        let whole = Scope::of(&event);
        let envelope = |name: &str| -> Result<ScalarValue, MapError> {
            field(&whole, &path(name)).map_err(MapError::Envelope)
        };
        let (ScalarValue::String(event_type), ScalarValue::String(event_id)) =
            (envelope("event_type")?, envelope("event_id")?)
        else {
            return Err(MapError::Envelope(
                "event_type and event_id must be text".into(),
            ));
        };
        let ScalarValue::Long(occurred_at) = envelope("occurred_at")? else {
            return Err(MapError::Envelope("occurred_at must be a timestamp".into()));
        };
        let Some(rules) = self.rules.get(&(aggregate.clone(), event_type)) else {
            return Ok(Vec::new());
        };
        // The flow's id: the event's own, else the one its header carries.
        let correlation_id = match field(&whole, &path("correlation_id")) {
            Ok(ScalarValue::String(id)) if !id.is_empty() => Some(id),
            _ => sluice_telemetry::correlation_id(message).map(str::to_owned),
        };
        let mut outputs = Vec::new();
        for rule in rules {
            let failed = |reason: String| {
                metrics::counter!(FAILED, "rule" => rule.id.clone()).increment(1);
                MapError::Mapping {
                    rule: rule.id.clone(),
                    reason,
                }
            };
            // The rule's scopes: the event, or each item of its list.
            let scopes: Vec<(Scope<'_>, String)> = match &rule.each {
                None => vec![(whole, rule.id.clone())],
                Some(list) => listed(&whole, list)
                    .map_err(failed)?
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (whole.with_item(item), format!("{}#{i}", rule.id)))
                    .collect(),
            };
            for (scope, name) in scopes {
                // A failure names the item it met (`lines#17`).
                let failed = |reason: String| match &rule.each {
                    Some(_) => failed(format!("{name}: {reason}")),
                    None => failed(reason),
                };
                let mut matched = true;
                for condition in &rule.when {
                    matched &= holds(condition, &scope).map_err(failed)?;
                }
                if !matched {
                    continue;
                }
                metrics::counter!(MATCHED, "rule" => rule.id.clone()).increment(1);
                let made = Made {
                    rule,
                    scope,
                    command_id: command_id(&event_id, &name),
                    event_id: &event_id,
                    correlation_id: correlation_id.as_deref(),
                    occurred_at,
                };
                outputs.push(self.command(&made).await.map_err(|err| match err {
                    Failed::Rule(reason) => failed(reason),
                    Failed::Map(err) => err,
                })?);
            }
        }
        Ok(outputs)
    }

    /// The record of one command of a rule.
    async fn command(&self, made: &Made<'_>) -> Result<OutputRecord, Failed> {
        let rule = made.rule;
        let origin = Origin {
            command_id: made.command_id.clone(),
            event_id: made.event_id,
            correlation_id: made.correlation_id,
            occurred_at: made.occurred_at,
            saga: None,
        };
        let command = build::command(&rule.target, &made.scope, &self.lookups, origin)
            .map_err(Failed::Rule)?;
        let output = match &command {
            Command::Sheet(key, upsert) => {
                self.record(
                    made,
                    &self.outputs.sheets,
                    key.clone(),
                    upsert,
                    &upsert.command_id,
                )
                .await?
            }
            Command::Erp(erp) => {
                self.record(
                    made,
                    &self.outputs.erp,
                    erp.external_ref.clone(),
                    erp,
                    &erp.command_id,
                )
                .await?
            }
        };
        metrics::counter!(PRODUCED, "rule" => rule.id.clone()).increment(1);
        tracing::debug!(rule = rule.id, topic = output.topic, "command made");
        Ok(output)
    }
}

/// Why a command was not made: the rule failed on the event, or its
/// record could not be made.
enum Failed {
    Rule(String),
    Map(MapError),
}

impl From<MapError> for Failed {
    fn from(err: MapError) -> Self {
        Self::Map(err)
    }
}

impl Mapper {
    async fn record<T: Contract>(
        &self,
        made: &Made<'_>,
        topic: &str,
        key: String,
        command: &T,
        command_id: &str,
    ) -> Result<OutputRecord, MapError> {
        let rule = &made.rule.id;
        let payload =
            self.codec
                .encode(topic, command)
                .await
                .map_err(|source| MapError::Encode {
                    rule: rule.clone(),
                    source,
                })?;
        let mut headers = vec![
            ("sluice.command_id".into(), command_id.as_bytes().to_vec()),
            ("sluice.rule".into(), rule.as_bytes().to_vec()),
        ];
        if let Some(id) = made.correlation_id {
            let header = sluice_telemetry::CORRELATION_ID_HEADER.to_owned();
            headers.push((header, id.as_bytes().to_vec()));
        }
        Ok(OutputRecord {
            topic: topic.to_owned(),
            key: Some(key.into_bytes()),
            payload,
            headers,
        })
    }
}

impl Transformer for Mapper {
    type Error = MapError;

    async fn transform(&self, message: &OwnedMessage) -> Result<Vec<OutputRecord>, MapError> {
        self.map(message).await
    }
}

fn path(name: &str) -> FieldPath {
    FieldPath::top_level(name)
}

/// One rule applied to one event (or one item of its list).
struct Made<'a> {
    rule: &'a Rule,
    scope: Scope<'a>,
    /// The rule's id for the event (and the item's place): a redelivery
    /// makes the same.
    command_id: String,
    event_id: &'a str,
    correlation_id: Option<&'a str>,
    occurred_at: i64,
}
