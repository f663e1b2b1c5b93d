//! One owner per event in the topology every deployment runs (the demo,
//! docker compose, the Helm chart): no rule the transformer ships acts on
//! the event that starts the saga toward a sink the saga writes, so no order
//! is reserved or recorded twice.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use sluice_contracts::Catalog;
use sluice_mapping::load_rules;
use sluice_mapping::rules::{Rule, Target};
use sluice_saga_orchestrator::cli::{Cli, Command};
use sluice_saga_orchestrator::file::FileSaga;

const SHIPPED: &str = include_str!("../../transformer/rules.toml");
const WITHOUT_SAGA: &str = include_str!("../../transformer/examples/orders-placed.toml");

/// The saga as a deployment runs it: its defaults.
fn saga_defaults() -> FileSaga {
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
    run.load_saga().unwrap()
}

/// The shipped rules that would act like the saga: on its event, toward
/// its ERP model or its sheet.
fn doubled<'r>(rules: &'r [Rule], saga: &FileSaga) -> Vec<&'r str> {
    let writes = |target: &Target| {
        saga.targets
            .iter()
            .any(|(command, _)| match (command, target) {
                (
                    Target::Sheet {
                        spreadsheet, sheet, ..
                    },
                    Target::Sheet {
                        spreadsheet: theirs,
                        sheet: their_sheet,
                        ..
                    },
                ) => (spreadsheet, sheet) == (theirs, their_sheet),
                (Target::Erp { model, .. }, Target::Erp { model: theirs, .. }) => model == theirs,
                _ => false,
            })
    };
    rules
        .iter()
        .filter(|rule| {
            format!("{}.events.v1", rule.aggregate) == saga.events_topic
                && rule.event_type == saga.starts_on
        })
        .filter(|rule| writes(&rule.target))
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
