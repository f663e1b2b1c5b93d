//! `erp-sink`: applies ErpCommands from Kafka to Odoo and reports each
//! outcome on `erp.results.v1`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice_config::SecretArgs;
use sluice_erp_sink::cli::Cli;
use sluice_erp_sink::odoo::{OdooClient, OdooLogin, Protocol};
use sluice_erp_sink::{Applier, ErpSink, RecordFields};
use sluice_service::{Service, Tuning};

fn main() -> Result<()> {
    sluice_runtime::block_on(service_main())
}

async fn service_main() -> Result<()> {
    let cli: Cli = sluice_config::parse().context("reading the configuration")?;
    let password = SecretArgs {
        value: cli.odoo_password,
        file: cli.odoo_password_file,
    }
    .resolve("odoo-password")?
    .context("odoo-password: set it, or odoo-password-file")?;
    let json2 = cli.odoo_protocol == Protocol::Json2;
    let Some(user) = cli.odoo_login.or(json2.then(String::new)) else {
        anyhow::bail!("odoo-login: set it (--odoo-protocol json-rpc logs in with it)");
    };
    let login = OdooLogin {
        url: cli.odoo_url,
        protocol: cli.odoo_protocol,
        database: cli.odoo_database,
        login: user,
        password,
    };
    let fields = RecordFields {
        external_ref: cli.external_ref_field,
        applied_commands: cli.applied_commands_field,
    };
    // After the start: the breaker's and limiter's metrics need its recorder.
    let service = Service::start(&cli.sink.consumer, Vec::new()).await?;
    let upstream = &cli.sink.upstream;
    let limiter = Arc::new(upstream.limiter("erp")?);
    // The ERP's limit is the fleet's: each replica takes its share.
    let tuning = Tuning {
        quota: Some(Arc::clone(&limiter)),
        ..Tuning::default()
    };
    let client = OdooClient::new(upstream.http()?, login, upstream.breaker("erp")?, limiter)
        .settle_after(Duration::from_secs(cli.odoo_settle_secs));
    let applier = Applier::new(client, fields)
        .confirm_on_create(cli.confirm_on_create)
        .cancel_with(cli.cancel_with);
    // A model without the sink's fields, or a wrong URL: better not to
    // start, naming it. An ERP that is away is checked at its first command.
    if let Err(err) = applier.check(&cli.models).await {
        match err.stops_start(cli.odoo_protocol) {
            None => tracing::warn!(error = %err, "the ERP's models not checked at start"),
            Some(hint) => {
                // The models' refusal is why it stops; say that, not how.
                if let Err(stopped) = service.stop().await {
                    tracing::warn!(error = %stopped, "stopping");
                }
                return Err(err).context(format!("checking the ERP's models (fields_get){hint}"));
            }
        }
    }
    let sink = ErpSink::new(
        service.codec(),
        applier,
        service.replies(cli.sink.results_topic)?,
        service.audit_log(&cli.sink.audit)?,
    );
    Ok(service
        .serve(vec![cli.sink.topic], &cli.sink.retry, tuning, sink)
        .await?)
}
