//! The mapping language: which events become which sink commands, and how
//! their fields are mapped (a rules file, TOML), checked against the event
//! contracts when it loads and evaluated on decoded events. The transformer
//! applies it to every event; a saga builds its steps' commands with it.

pub mod build;
pub mod check;
pub mod eval;
pub mod rules;
pub mod saga;

pub use check::check;
pub use rules::{Rules, RulesError};

/// Parses a rules file and checks it against the event contracts.
pub fn load_rules(text: &str, catalog: &sluice_contracts::Catalog) -> Result<Rules, RulesError> {
    let rules = Rules::parse(text)?;
    check(&rules, catalog)?;
    Ok(rules)
}
