//! `erp-sink`: applies ErpCommands from Kafka to Odoo and reports each
//! outcome on `erp.results.v1`.

use std::sync::Arc;

use anyhow::{Context, Result};
use sluice_config::SecretArgs;
use sluice_erp_sink::cli::Cli;
use sluice_erp_sink::odoo::{OdooClient, OdooLogin};
use sluice_erp_sink::{Applier, ErpSink, RecordFields};
use sluice_service::{Service, Tuning};

#[tokio::main]
async fn main() -> Result<()> {
    let cli: Cli = sluice_config::parse().context("reading the configuration")?;
    let password = SecretArgs {
        value: cli.odoo_password,
        file: cli.odoo_password_file,
    }
    .resolve("odoo-password")?
    .context("odoo-password: set it, or odoo-password-file")?;
    let login = OdooLogin {
        url: cli.odoo_url,
        database: cli.odoo_database,
        login: cli.odoo_login,
        password,
    };
    let fields = RecordFields {
        external_ref: cli.external_ref_field,
        applied_commands: cli.applied_commands_field,
    };
    // After the start: the breaker's and limiter's metrics need its recorder.
    let service = Service::start(&cli.consumer, Vec::new()).await?;
    let upstream = &cli.upstream;
    let client = OdooClient::new(
        upstream.http()?,
        login,
        upstream.breaker("erp")?,
        Arc::new(upstream.limiter("erp")?),
    );
    let sink = ErpSink::new(
        service.codec(),
        Applier::new(client, fields),
        service.replies(cli.results_topic)?,
    );
    let consumed = service
        .consume(vec![cli.topic], &cli.retry, Tuning::default(), sink)
        .await;
    service.stop().await;
    Ok(consumed?)
}
