//! One owner per event in the topology every deployment runs (the demo,
//! docker compose, the Helm chart): no rule the transformer ships acts on
//! the event that starts the saga toward a sink the saga writes, so no order
//! is reserved or recorded twice.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use sluice_contracts::Catalog;
use sluice_saga_orchestrator::cli::{Cli, Command};
use sluice_saga_orchestrator::fulfilment::{STARTS_ON, Settings};
use sluice_transformer::load_rules;
use sluice_transformer::rules::{Rule, Target};

const SHIPPED: &str = include_str!("../../transformer/rules.toml");
const WITHOUT_SAGA: &str = include_str!("../../transformer/examples/orders-placed.toml");

/// The saga's settings as a deployment runs it: its defaults.
fn saga_defaults() -> Settings {
    let cli = Cli::try_parse_from([
        "saga-orchestrator",
        "run",
        "--kafka-bootstrap",
        "127.0.0.1:9",
        "--schema-registry-url",
        "http://127.0.0.1:9",
    ])
    .unwrap();
    let Command::Run(run) = cli.command else {
        panic!("run")
    };
    run.saga_settings()
}

/// The shipped rules that would act like the saga: on its event, toward
/// its ERP model or its sheet.
fn doubled<'r>(rules: &'r [Rule], saga: &Settings) -> Vec<&'r str> {
    rules
        .iter()
        .filter(|rule| {
            format!("{}.events.v1", rule.aggregate) == saga.events_topic
                && rule.event_type == STARTS_ON
        })
        .filter(|rule| match &rule.target {
            Target::Sheet {
                spreadsheet, sheet, ..
            } => (spreadsheet, sheet) == (&saga.spreadsheet, &saga.sheet),
            Target::Erp { model, .. } => model == &saga.erp_model,
        })
        .map(|rule| rule.id.as_str())
        .collect()
}

#[test]
fn no_shipped_rule_does_what_the_saga_does() {
    let catalog = Catalog::embedded().unwrap();
    let saga = saga_defaults();
    let shipped = load_rules(SHIPPED, &catalog).unwrap();
    assert_eq!(doubled(&shipped.rules, &saga), Vec::<&str>::new());

    // The check can fail: the rules for a deployment without the saga
    // do exactly what the saga does.
    let without_saga = load_rules(&format!("{SHIPPED}\n{WITHOUT_SAGA}"), &catalog).unwrap();
    assert_eq!(
        doubled(&without_saga.rules, &saga),
        ["orders-sheet-placed", "orders-erp-sale-order"]
    );
}
