//! `transformer`: maps domain events to sink commands by the rules file,
//! each batch's commands, dead letters and input offsets in one Kafka
//! transaction.

use anyhow::{Context, Result};
use sluice_mapping::load_rules;
use sluice_service::Service;
use sluice_transformer::cli::Cli;
use sluice_transformer::{Mapper, OutputTopics};

fn main() -> Result<()> {
    sluice_runtime::block_on(service_main())
}

async fn service_main() -> Result<()> {
    let cli: Cli = sluice_config::parse().context("reading the configuration")?;
    let rules_file = cli.rules.display();
    let text = std::fs::read_to_string(&cli.rules)
        .with_context(|| format!("reading the rules file {rules_file}"))?;
    let rules = load_rules(&text, &cli.consumer.contracts.catalog()?)
        .and_then(|rules| rules.without(&cli.without_rules))
        .with_context(|| format!("rules file {rules_file}"))?;
    if cli.check {
        let count = rules.rules.len();
        println!("{rules_file}: {count} rules, valid against the contracts");
        return Ok(());
    }
    let transactional_id = match cli.transactional_id {
        Some(id) => id,
        None => format!(
            "sluice-transformer-{}",
            std::env::var("HOSTNAME").context(
                "set --transactional-id (or HOSTNAME): each instance needs its own, stable one"
            )?
        ),
    };
    let service = Service::start(&cli.consumer, Vec::new()).await?;
    let outputs = OutputTopics {
        sheets: cli.sheets_topic,
        erp: cli.erp_topic,
    };
    let routes = cli.routes.by_aggregate_type();
    let mapper = Mapper::new(rules, &routes, service.codec(), outputs);
    let topics = mapper.input_topics();
    let transformed = service.transform(topics, transactional_id, mapper).await;
    let stopped = service.stop().await;
    transformed?;
    Ok(stopped?)
}
