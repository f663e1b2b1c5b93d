//! `sheets-sink`: applies SheetRowUpserts from Kafka to Google Sheets.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice_service::{Service, Tuning};
use sluice_sheets_sink::cli::Cli;
use sluice_sheets_sink::google::{ServiceAccountKey, SheetsClient, TokenSource};
use sluice_sheets_sink::{SheetsSink, Upserter};

/// How long a metadata server that does not answer yet is waited for (GKE's
/// takes a few seconds to serve a new pod).
const METADATA_PATIENCE: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    sluice_runtime::block_on(service_main())
}

async fn service_main() -> Result<()> {
    let cli: Cli = sluice_config::parse().context("reading the configuration")?;
    let key = match &cli.service_account {
        Some(path) => Some(ServiceAccountKey::read(path).map_err(anyhow::Error::msg)?),
        None => None,
    };
    if key.is_none() && cli.subject.is_some() {
        anyhow::bail!(
            "--sheets-subject needs --service-account: only a key's account can be delegated a user"
        );
    }
    // Before the limiter and the breaker: their metrics need its recorder.
    let service = Service::start(&cli.sink.consumer, Vec::new()).await?;
    let upstream = &cli.sink.upstream;
    let http = upstream.http()?;
    let tokens = match key {
        Some(key) => {
            TokenSource::new(key, cli.subject, http.clone()).map_err(anyhow::Error::msg)?
        }
        None => TokenSource::metadata(&cli.metadata_host, http.clone(), METADATA_PATIENCE)
            .await
            .context("no --service-account key given, so tokens come from the metadata server")?,
    };
    let (limiter, breaker) = (
        Arc::new(upstream.limiter("sheets")?),
        upstream.breaker("sheets")?,
    );
    // Google's per-user quota is the fleet's: each replica takes its share.
    let tuning = Tuning {
        quota: Some(Arc::clone(&limiter)),
        ..Tuning::default()
    };
    let client = SheetsClient::new(&cli.base_url, http, tokens, limiter, breaker);
    let sink = SheetsSink {
        codec: service.codec(),
        upserter: Upserter::new(client).user_entered(cli.user_entered),
        replies: service.replies(cli.sink.results_topic)?,
        audit: service.audit_log(&cli.sink.audit)?,
    };
    Ok(service
        .serve(vec![cli.sink.topic], &cli.sink.retry, tuning, sink)
        .await?)
}
