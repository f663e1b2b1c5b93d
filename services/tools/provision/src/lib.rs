//! Provisioning: creates the topics of the topic map and registers their value
//! schemas, so that every deployment path (the local stack, docker compose, a
//! Helm hook Job) sets up Kafka and the registry the same way.
//!
//! It is idempotent: existing topics are left as they are (partition drift is
//! reported), an already registered schema is not registered again, each
//! subject's compatibility mode is set (BACKWARD unless told otherwise), and
//! a schema change the mode forbids is refused, naming the field, before
//! anything is written.

mod compatibility;
mod error;
mod registry;
mod topics;

pub use compatibility::Compatibility;
pub use error::ProvisionError;
pub use registry::{RegistryClient, RegistryConfig, SchemaOutcome};
pub use topics::{Replication, TopicOutcome, ensure_topics};
