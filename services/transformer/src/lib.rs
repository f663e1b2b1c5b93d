//! transformer: domain events mapped to sink commands (sheet rows, ERP
//! commands) by declarative rules, exactly once through Kafka transactions.
//! `main.rs` wires it; tests drive [`Mapper`] through the transactional loop.

pub mod check;
mod eval;
mod mapper;
mod metrics;
pub mod rules;

pub use check::check;
pub use mapper::{MapError, Mapper, OutputTopics, command_id};
pub use metrics::{FAILED, MATCHED, PRODUCED};
pub use rules::{Rules, RulesError};

/// Parses a rules file and checks it against the event contracts.
pub fn load_rules(text: &str, catalog: &sluice_contracts::Catalog) -> Result<Rules, RulesError> {
    let rules = Rules::parse(text)?;
    check(&rules, catalog)?;
    Ok(rules)
}
