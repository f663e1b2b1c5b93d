//! The topic map (`schemas/topics.toml`) joined with the schema files it names.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use include_dir::{Dir, include_dir};
use serde::Deserialize;
use serde_json::Value;

use crate::ContractError;
use crate::schema_file::SchemaFile;

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../../../schemas");
const TOPIC_MAP: &str = "topics.toml";
/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// One `[[topic]]` entry of the topic map, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Topic name, ending in `.v<major>`.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Kafka `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// Kafka `retention.ms`; -1 keeps data forever.
    pub retention_ms: i64,
    /// What the message key holds (documentation).
    pub key: String,
    /// Path of the value's `.avsc`, relative to `schemas/`.
    pub value_schema: String,
    /// What flows on the topic.
    pub doc: String,
    /// Branches of the value's union that only Sluice emits (the saga's
    /// outcomes): no client may post them through ingest.
    #[serde(default)]
    pub reserved_event_types: Vec<String>,
}

/// Kafka `cleanup.policy` of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CleanupPolicy {
    /// Segments are deleted after the retention time.
    Delete,
    /// Only the newest value per key is kept.
    Compact,
}

impl CleanupPolicy {
    /// The value of Kafka's `cleanup.policy` topic config.
    pub fn as_kafka_config(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
        }
    }
}

/// A topic with its parsed value schema.
#[derive(Debug, Clone)]
pub struct Topic {
    spec: TopicSpec,
    value_schema: Arc<SchemaFile>,
}

impl Topic {
    /// Topic name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The topic's entry in the topic map.
    pub fn spec(&self) -> &TopicSpec {
        &self.spec
    }

    /// Registry subject of the values (TopicNameStrategy).
    pub fn value_subject(&self) -> String {
        format!("{}-value", self.spec.name)
    }

    /// The value schema.
    pub fn value_schema(&self) -> &apache_avro::Schema {
        &self.value_schema.schema
    }

    /// The named types the value schema's references resolve to.
    pub fn value_names(&self) -> &HashMap<apache_avro::schema::Name, apache_avro::Schema> {
        &self.value_schema.names
    }

    /// The parsed value schema, shared: for what is built on it once and
    /// kept (a codec's writer for it).
    pub fn shared_value_schema(&self) -> Arc<apache_avro::Schema> {
        Arc::clone(&self.value_schema.schema)
    }

    /// The value schema as compact JSON, docs included: the text registered.
    pub fn value_schema_json(&self) -> &str {
        &self.value_schema.compact_json
    }

    /// Whether `event_type` is one of the event types of this event topic:
    /// a record its `payload` union (or one-record payload) holds.
    pub fn has_event_type(&self, event_type: &str) -> bool {
        use apache_avro::Schema;
        let Schema::Record(envelope) = self.value_schema() else {
            return false;
        };
        let named = |schema: &Schema| match schema {
            Schema::Record(record) => record.name.name() == event_type,
            Schema::Ref { name } => name.name() == event_type,
            _ => false,
        };
        envelope
            .fields
            .iter()
            .filter(|field| field.name == "payload")
            .any(|field| match &field.schema {
                Schema::Union(union) => union.variants().iter().any(named),
                other => named(other),
            })
    }
}

/// Every topic of Sluice with its value schema, validated.
#[derive(Debug, Clone)]
pub struct Catalog {
    topics: Vec<Topic>,
}

impl Catalog {
    /// The contracts this binary was built with.
    pub fn embedded() -> Result<Self, ContractError> {
        let map = EMBEDDED
            .get_file(TOPIC_MAP)
            .and_then(|file| file.contents_utf8())
            .unwrap_or_default();
        Self::parse(map, |path| {
            Ok(EMBEDDED
                .get_file(path)
                .and_then(|file| file.contents_utf8())
                .map(str::to_owned))
        })
    }

    /// The contracts in a `schemas/` folder on disk.
    pub fn from_dir(dir: &Path) -> Result<Self, ContractError> {
        let read = |relative: &str| {
            let path = dir.join(relative);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(ContractError::Io { path, source }),
            }
        };
        let map = read(TOPIC_MAP)?.ok_or_else(|| ContractError::Io {
            path: dir.join(TOPIC_MAP),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        Self::parse(&map, read)
    }

    /// Parses a topic map, reading the schema files it names with `read`
    /// (`Ok(None)` when a file does not exist).
    pub fn parse(
        topic_map: &str,
        read: impl Fn(&str) -> Result<Option<String>, ContractError>,
    ) -> Result<Self, ContractError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct TopicMap {
            topic: Vec<TopicSpec>,
        }
        let map: TopicMap = toml::from_str(topic_map)?;

        let mut files: HashMap<String, Arc<SchemaFile>> = HashMap::new();
        let mut topics: Vec<Topic> = Vec::with_capacity(map.topic.len());
        for spec in map.topic {
            validate_spec(&spec)?;
            if topics.iter().any(|t| t.name() == spec.name) {
                return Err(ContractError::DuplicateTopic(spec.name));
            }
            let value_schema = match files.get(&spec.value_schema) {
                Some(file) => Arc::clone(file),
                None => {
                    let text = read(&spec.value_schema)?.ok_or_else(|| {
                        ContractError::MissingSchemaFile {
                            topic: spec.name.clone(),
                            path: spec.value_schema.clone(),
                        }
                    })?;
                    let file = Arc::new(SchemaFile::parse(&spec.value_schema, &text)?);
                    files.insert(spec.value_schema.clone(), Arc::clone(&file));
                    file
                }
            };
            check_reserved(&spec, &value_schema.schema)?;
            topics.push(Topic { spec, value_schema });
        }
        check_shared_definitions(&topics)?;
        Ok(Self { topics })
    }

    /// All topics, in topic-map order.
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    /// The topic of that name.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name() == name)
    }

    /// The first topic whose values use `schema_file` (relative to
    /// `schemas/`): its value schema is that file's.
    pub fn topic_with_schema(&self, schema_file: &str) -> Option<&Topic> {
        self.topics
            .iter()
            .find(|t| t.spec.value_schema == schema_file)
    }
}

/// Each reserved event type names a record the value schema holds.
fn check_reserved(spec: &TopicSpec, schema: &apache_avro::Schema) -> Result<(), ContractError> {
    let json = serde_json::to_value(schema).unwrap_or_default();
    for reserved in &spec.reserved_event_types {
        if !names_record(&json, reserved) {
            return Err(ContractError::InvalidSetting {
                topic: spec.name.clone(),
                setting: "reserved_event_types",
                reason: format!("{reserved:?} is not a record of {}", spec.value_schema),
            });
        }
    }
    Ok(())
}

/// Whether a record named `name` appears anywhere in a schema's JSON.
fn names_record(json: &serde_json::Value, name: &str) -> bool {
    match json {
        serde_json::Value::Object(map) => {
            (map.get("type").and_then(|t| t.as_str()) == Some("record")
                && map.get("name").and_then(|n| n.as_str()) == Some(name))
                || map.values().any(|value| names_record(value, name))
        }
        serde_json::Value::Array(items) => items.iter().any(|item| names_record(item, name)),
        _ => false,
    }
}

fn validate_spec(spec: &TopicSpec) -> Result<(), ContractError> {
    let invalid = |setting, reason: &str| ContractError::InvalidSetting {
        topic: spec.name.clone(),
        setting,
        reason: reason.to_owned(),
    };
    let name = &spec.name;
    let versioned = name
        .rsplit_once(".v")
        .is_some_and(|(_, major)| !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()));
    let legal = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !versioned || !legal || name.len() > MAX_TOPIC_NAME_LEN {
        return Err(invalid(
            "name",
            "must use only a-z, 0-9, '.', '-', end in .v<major> and be at most 249 characters",
        ));
    }
    if spec.partitions < 1 {
        return Err(invalid("partitions", "must be at least 1"));
    }
    if spec.retention_ms != -1 && spec.retention_ms < 1 {
        return Err(invalid("retention_ms", "must be -1 (forever) or positive"));
    }
    Ok(())
}

/// A type used by several files (SagaStep, ErpOperation, ...) is written out in
/// each, since registered schemas here carry no references; this keeps those
/// copies identical.
fn check_shared_definitions(topics: &[Topic]) -> Result<(), ContractError> {
    let mut seen: HashMap<&str, (&str, &Value)> = HashMap::new();
    for topic in topics {
        let file = &topic.value_schema;
        for (name, definition) in &file.named_types {
            match seen.get(name.as_str()) {
                Some((first, earlier)) if *earlier != definition => {
                    return Err(ContractError::ConflictingDefinition {
                        name: name.clone(),
                        first: (*first).to_owned(),
                        second: file.path.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    seen.insert(name, (&file.path, definition));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"type":"record","name":"A","namespace":"n","doc":"a","fields":[]}"#;

    fn parse(map: &str, files: &[(&str, &str)]) -> Result<Catalog, ContractError> {
        Catalog::parse(map, |path| {
            Ok(files
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, text)| (*text).to_owned()))
        })
    }

    fn topic(name: &str, schema: &str) -> String {
        format!(
            "[[topic]]\nname = \"{name}\"\npartitions = 3\ncleanup_policy = \"delete\"\n\
             retention_ms = 1000\nkey = \"k\"\nvalue_schema = \"{schema}\"\ndoc = \"d\"\n"
        )
    }

    #[test]
    fn embedded_contracts_are_valid() {
        let catalog = Catalog::embedded().unwrap();
        let orders = catalog.topic("orders.events.v1").unwrap();
        assert_eq!(orders.value_subject(), "orders.events.v1-value");
        assert_eq!(
            orders.value_schema().name().unwrap().fullname(None),
            "dev.sluice.orders.OrderEvent"
        );
    }

    #[test]
    fn every_consuming_service_has_a_dead_letter_topic() {
        let catalog = Catalog::embedded().unwrap();
        for service in [
            "outbox-relay",
            "transformer",
            "sheets-sink",
            "erp-sink",
            "saga-orchestrator",
        ] {
            let dlq = catalog.topic(&format!("dlq.{service}.v1")).unwrap();
            assert_eq!(dlq.spec().value_schema, "dlq/DeadLetter.avsc");
        }
    }

    #[test]
    fn event_envelopes_share_their_metadata_fields() {
        let catalog = Catalog::embedded().unwrap();
        let envelope = |topic: &str| -> Vec<Value> {
            let json: Value =
                serde_json::from_str(catalog.topic(topic).unwrap().value_schema_json()).unwrap();
            let mut fields = json["fields"].as_array().unwrap().clone();
            // Docs name the aggregate; the wire shape must match.
            fields.iter_mut().for_each(|f| {
                f.as_object_mut().unwrap().remove("doc");
            });
            fields
                .into_iter()
                .filter(|f| f["name"] != "payload")
                .collect()
        };
        assert_eq!(envelope("orders.events.v1"), envelope("requests.events.v1"));
    }

    #[test]
    fn duplicate_topic_is_refused() {
        let map = topic("a.v1", "a.avsc") + &topic("a.v1", "a.avsc");
        let err = parse(&map, &[("a.avsc", RECORD)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "schemas/topics.toml: topic a.v1 is declared twice"
        );
    }

    #[test]
    fn unversioned_topic_name_is_refused() {
        let err = parse(&topic("orders", "a.avsc"), &[("a.avsc", RECORD)]).unwrap_err();
        assert!(
            matches!(
                err,
                ContractError::InvalidSetting {
                    setting: "name",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_reserved_event_type_must_be_a_record_of_the_schema() {
        let ok = topic("a.v1", "a.avsc") + "reserved_event_types = [\"A\"]\n";
        assert!(parse(&ok, &[("a.avsc", RECORD)]).is_ok());
        let bad = topic("a.v1", "a.avsc") + "reserved_event_types = [\"B\"]\n";
        let err = parse(&bad, &[("a.avsc", RECORD)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "schemas/topics.toml: topic a.v1: reserved_event_types \"B\" is not a record of a.avsc"
        );
    }

    #[test]
    fn missing_schema_file_names_topic_and_path() {
        let err = parse(&topic("a.v1", "nope.avsc"), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "schemas/topics.toml: topic a.v1: value_schema nope.avsc does not exist"
        );
    }

    #[test]
    fn unknown_topic_setting_is_refused() {
        let map = topic("a.v1", "a.avsc") + "replicas = 3\n";
        let err = parse(&map, &[("a.avsc", RECORD)]).unwrap_err();
        assert!(err.to_string().contains("replicas"), "{err}");
    }

    #[test]
    fn diverging_copies_of_a_shared_type_are_refused() {
        let with_enum = |symbols: &str| {
            format!(
                r#"{{"type":"record","name":"{{}}","namespace":"n","doc":"r","fields":[
                {{"name":"e","doc":"e","type":{{"type":"enum","name":"E","doc":"e","symbols":[{symbols}]}}}}]}}"#
            )
        };
        let a = with_enum(r#""X""#).replace("{}", "A");
        let b = with_enum(r#""X","Y""#).replace("{}", "B");
        let map = topic("a.v1", "a.avsc") + &topic("b.v1", "b.avsc");
        let err = parse(&map, &[("a.avsc", &a), ("b.avsc", &b)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "n.E is defined differently in schemas/a.avsc and schemas/b.avsc"
        );
    }
}
