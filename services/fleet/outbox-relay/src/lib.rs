//! outbox-relay: committed outbox rows from Postgres logical replication
//! (pgoutput) to Kafka, confirming each transaction's LSN only after Kafka
//! has all of its events. `main.rs` wires it; tests drive [`Relay`] directly.
#![doc = include_str!("../README.md")]

mod connection;
mod delivery;
mod lag;
mod metrics;
mod pgoutput;
mod relay;
mod row;

pub use connection::ReplicationConnection;
pub use delivery::{DeliveryError, LSN_HEADER};
pub use metrics::{COMMIT_TO_ACK, RELAYED, SLOT_LAG, SLOT_LOST, STREAMING};
pub use relay::{MESSAGE_PREFIX, OutboxSource, Relay, RelayError};
pub use row::{AddressedRow, OutboxFormat, OutboxMessage, OutboxRow};
