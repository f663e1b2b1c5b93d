//! `sheets-sink`: applies SheetRowUpserts from Kafka to Google Sheets.

use std::sync::Arc;

use anyhow::{Context, Result};
use sluice_service::{Service, Tuning};
use sluice_sheets_sink::cli::Cli;
use sluice_sheets_sink::google::{ServiceAccountKey, SheetsClient, TokenSource};
use sluice_sheets_sink::{SheetsSink, Upserter};

#[tokio::main]
async fn main() -> Result<()> {
    let cli: Cli = sluice_config::parse().context("reading the configuration")?;
    let key = ServiceAccountKey::read(&cli.service_account).map_err(anyhow::Error::msg)?;
    // Before the limiter and the breaker: their metrics need its recorder.
    let service = Service::start(&cli.consumer, Vec::new()).await?;
    let upstream = &cli.upstream;
    let http = upstream.http()?;
    let tokens = TokenSource::new(key, http.clone()).map_err(anyhow::Error::msg)?;
    let (limiter, breaker) = (
        Arc::new(upstream.limiter("sheets")?),
        upstream.breaker("sheets")?,
    );
    let client = SheetsClient::new(&cli.base_url, http, tokens, limiter, breaker);
    let sink = SheetsSink {
        codec: service.codec(),
        upserter: Upserter::new(client),
        replies: service.replies(cli.results_topic)?,
    };
    let consumed = service
        .consume(vec![cli.topic], &cli.retry, Tuning::default(), sink)
        .await;
    let stopped = service.stop().await;
    consumed?;
    Ok(stopped?)
}
