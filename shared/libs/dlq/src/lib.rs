//! Dead letters: a message a service cannot handle goes to `dlq.<service>.v1`
//! as a `DeadLetter` record holding its key, value and headers byte for byte
//! and why it failed. The same facts are mirrored in `sluice.dlq.*` headers so
//! `kcat -f '%h'` shows them without a registry. The Kafka key is the
//! original key, so dead letters of one aggregate stay in order.

mod headers;
mod publisher;

pub use headers::HEADER_PREFIX;
pub use publisher::{DeadLetterError, DeadLetterPublisher, Failure, Original};
