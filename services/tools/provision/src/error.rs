use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The contracts themselves are invalid.
    #[error(transparent)]
    Contract(#[from] sluice_contracts::ContractError),

    /// Kafka could not be reached or refused a request.
    #[error("kafka: {action}: {source}")]
    Kafka {
        /// What was being done.
        action: &'static str,
        /// The client error.
        source: KafkaError,
    },

    /// Kafka refused to create a topic.
    #[error("kafka: creating topic {topic} failed: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// Kafka's error code.
        code: RDKafkaErrorCode,
    },

    /// The registry could not be reached or answered something unreadable.
    #[error("schema registry: {action} for subject {subject}: {message}")]
    Registry {
        /// The subject.
        subject: String,
        /// What was being done.
        action: &'static str,
        /// What went wrong.
        message: String,
    },

    /// A schema the subject's compatibility mode forbids.
    #[error(
        "schemas/{schema_file} is not {mode} compatible with the registered schema of {subject} \
         (version {version}): {details}. Give new fields a default, keep the defaults of removed \
         fields, or publish a new major version (a new topic ending in .v<N+1>); \
         docs/EVOLVING.md says how"
    )]
    IncompatibleSchema {
        /// The subject.
        subject: String,
        /// The schema file, relative to `schemas/`.
        schema_file: String,
        /// The mode it breaks.
        mode: crate::Compatibility,
        /// The registered version it breaks it against.
        version: u32,
        /// Which field, and which way readers would fail.
        details: String,
    },
}
