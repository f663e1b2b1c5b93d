use std::path::PathBuf;

/// Why the contracts in `schemas/` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The topic map is not valid TOML or has unknown or missing fields.
    #[error("schemas/topics.toml: {0}")]
    TopicMap(#[from] toml::de::Error),

    /// A topic is declared twice.
    #[error("schemas/topics.toml: topic {0} is declared twice")]
    DuplicateTopic(String),

    /// A topic setting is out of range.
    #[error("schemas/topics.toml: topic {topic}: {setting} {reason}")]
    InvalidSetting {
        /// The topic.
        topic: String,
        /// The setting's name in the topic map.
        setting: &'static str,
        /// What is wrong with its value.
        reason: String,
    },

    /// A topic names a schema file that does not exist.
    #[error("schemas/topics.toml: topic {topic}: value_schema {path} does not exist")]
    MissingSchemaFile {
        /// The topic.
        topic: String,
        /// The path as written in the topic map.
        path: String,
    },

    /// A schema file could not be read from disk.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A schema file is not JSON.
    #[error("schemas/{path}: not JSON: {source}")]
    SchemaJson {
        /// The file, relative to `schemas/`.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },

    /// A schema file is JSON but not a valid Avro schema.
    #[error("schemas/{path}: not a valid Avro schema: {source}")]
    InvalidSchema {
        /// The file, relative to `schemas/`.
        path: String,
        /// What Avro rejected.
        source: Box<apache_avro::Error>,
    },

    /// A topic's value schema is not a record.
    #[error("schemas/{path}: a topic's value schema must be a record")]
    NotARecord {
        /// The file, relative to `schemas/`.
        path: String,
    },

    /// A named type or field has no `doc`.
    #[error("schemas/{path}: {location} has no doc")]
    MissingDoc {
        /// The file, relative to `schemas/`.
        path: String,
        /// The type or field without documentation, as a dotted path.
        location: String,
    },

    /// Two files define the same named type differently.
    #[error("{name} is defined differently in schemas/{first} and schemas/{second}")]
    ConflictingDefinition {
        /// Full name of the type.
        name: String,
        /// The file that defined it first.
        first: String,
        /// The file whose definition differs.
        second: String,
    },
}
