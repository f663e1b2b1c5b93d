//! The Sluice contracts: every topic, its configuration and the Avro schema of
//! its values, as declared in `schemas/` at the root of the repository.
//!
//! The files are embedded at build time, so a binary always carries the
//! contract it was built against; [`Catalog::from_dir`] reads a changed copy
//! (to check a schema change before it ships).

mod a1;
mod catalog;
mod error;
mod schema_file;
mod time;
pub mod types;

pub use a1::column_name;
pub use catalog::{Catalog, CleanupPolicy, Topic, TopicSpec};
pub use error::ContractError;
pub use schema_file::named_types_of;
pub use time::now_millis;

/// The column of a sheet that holds its rows' versions, sheets-sink's own:
/// no command may write it (a mapping naming it is refused at start).
pub const SHEET_VERSIONS_COLUMN: &str = "sluice:versions";
