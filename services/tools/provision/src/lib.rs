//! Provisioning: creates the topics of the topic map and registers their value
//! schemas, so that every deployment path (the local stack, docker compose, a
//! Helm hook Job) sets up Kafka and the registry the same way.
//!
//! It is idempotent: existing topics are left as they are (partition drift is
//! reported), an already registered schema is not registered again, and a
//! schema change that breaks BACKWARD compatibility is refused before anything
//! is written.

mod error;
mod registry;
mod topics;

pub use error::ProvisionError;
pub use registry::{RegistryClient, RegistryConfig, SchemaOutcome};
pub use topics::{Replication, TopicOutcome, ensure_topics};
